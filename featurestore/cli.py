"""The `featurestore` program: one parser, sub-commands contributed by each package.

A package adds commands by declaring a module in the entry-point group `featurestore.commands`
(see pyproject.toml) whose `add_parser(subparsers)` adds them and whose `HELP_ORDER` places them
in `--help`. The program imports those modules only, and they import only argparse-level code at
import time, so `featurestore --help` stays instant; heavy libraries (torch, dask, librosa) load
for the command that needs them. This package never names the packages above it: they find it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys
from types import ModuleType

from featurestore import __version__
from featurestore.errors import UserError

ENTRY_POINT_GROUP = "featurestore.commands"
OWN = "featurestore.commands"  # always there, even in an environment whose entry points are stale


def command_modules() -> list[ModuleType]:
    """Every module of the entry-point group, in help order."""
    names = {entry.value for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)} | {OWN}
    modules = [importlib.import_module(name) for name in names]
    return sorted(modules, key=lambda m: (getattr(m, "HELP_ORDER", 100), m.__name__))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="featurestore",
        description="Music classification data toolkit: label manifests, a Zarr feature store, trainers.",
    )
    parser.add_argument("--version", action="version", version=f"featurestore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in command_modules():
        module.add_parser(sub)
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
