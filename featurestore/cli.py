"""The `featurestore` program: one parser, one sub-command per job.

Each command lives in its own module exposing `add_parser(subparsers)`; those modules import
only argparse-level code at import time, so `featurestore --help` stays instant and heavy
libraries (torch, dask, librosa) load only for the command that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from featurestore import __version__
from featurestore.errors import UserError

# In the order `--help` lists them. The CLI is the one place that sees all three packages;
# the packages themselves depend one way: trainers -> featurestore -> manifests.
COMMAND_MODULES = (
    "manifests.cli",
    "featurestore.commands",
    "trainers.cli",
    "trainers.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="featurestore",
        description="Music classification data toolkit: label manifests, a Zarr feature store, trainers.",
    )
    parser.add_argument("--version", action="version", version=f"featurestore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except UserError as exc:
        print(f"featurestore {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"featurestore {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `featurestore info STORE | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
