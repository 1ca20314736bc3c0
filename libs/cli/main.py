"""The `stoker` console script: one subcommand group per module in libs/cli/.

To add a command group (e.g. `stoker audit verify`), create `libs/cli/audit.py` with
`register(subparsers)` that adds its parser and sets `handler=<function(args) -> int>` as a default.
Keep the module's top-level imports light: import heavy things inside the handler.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import libs.cli

Handler = Callable[[argparse.Namespace], int]


def command_modules() -> list[ModuleType]:
    """Every libs.cli module that defines `register`, in name order."""
    modules = []
    for info in sorted(pkgutil.iter_modules(libs.cli.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "main":
            continue
        module = importlib.import_module(f"libs.cli.{info.name}")
        if callable(getattr(module, "register", None)):
            modules.append(module)
    return modules


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered command group."""
    parser = argparse.ArgumentParser(prog="stoker", description="Keeps rented GPUs warm for ComfyUI.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers: Any = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in command_modules():
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
