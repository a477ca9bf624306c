"""`python -m benchmarks [footprint|build|loader|scaling|recovery|growth|gpu|all] [--quick] [--out DIR] [--cache DIR]`."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks.context import DEFAULT_CACHE, DEFAULT_OUT, Context
from benchmarks.results import ORDER

QUICK_OUT = DEFAULT_CACHE / "quick"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure footprint, build, loader and scaling side by side with baselines; write RESULTS.md.",
    )
    parser.add_argument("names", nargs="*", default=["all"], choices=[*ORDER, "all"], metavar="BENCHMARK",
                        help=f"one or more of {', '.join(ORDER)}, or all (default)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny inputs (3-s clips, a handful of each; about a minute for all of them): "
                             "a smoke test of every code path, not a measurement")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where RESULTS.md, results/*.json and PNGs go (default {DEFAULT_OUT}, "
                             f"or {QUICK_OUT} with --quick so a smoke test never overwrites the committed results)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"generated input audio, reused between runs (default {DEFAULT_CACHE})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = list(ORDER) if "all" in args.names else [n for n in ORDER if n in args.names]
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    command = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])

    from benchmarks.machine import library_versions, machine_info, now
    from benchmarks.results import write_results, write_section

    failed = []
    with tempfile.TemporaryDirectory(prefix="featurestore-bench-") as work, contextlib.closing(
        Context(quick=args.quick, out=out, cache=args.cache, work=Path(work))
    ) as ctx:
        load = os.getloadavg()[0]
        if not args.quick and load > 0.5:
            ctx.log(f"warning: load average {load:.2f}: other processes share the cores, so absolute numbers "
                    "will be low and ratios skewed; RESULTS.md records the load")
        for name in names:
            ctx.log(f"== {name}{' (quick)' if args.quick else ''}")
            machine, date, start = machine_info(), now(), time.perf_counter()
            try:
                section = importlib.import_module(f"benchmarks.{name}").run(ctx)
            except Exception:  # noqa: BLE001 - one broken benchmark must not cost the others' results
                traceback.print_exc()
                ctx.log(f"== {name} FAILED; its section in {out} is left as it was")
                failed.append(name)
                continue
            section.command, section.date, section.quick = command, date, args.quick
            section.wall_seconds = time.perf_counter() - start
            section.machine, section.versions = machine, library_versions()
            write_section(out, section)
            path = write_results(out)
            ctx.log(f"== {name} done in {section.wall_seconds:.0f} s; wrote {path}")
            for t in section.targets:
                ctx.log(f"   {'met   ' if t.met else 'MISSED'} {t.what}: {t.measured} (target {t.goal})")
    if failed:
        ctx.log(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
