"""The ``nnframe`` command line. The only module that prints."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import NNFrameError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one readable line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _cmd_plugins(args: argparse.Namespace) -> int:
    from .registry import get_registry

    registry = get_registry()
    for kind in ("activation", "cost"):
        print(f"{kind.capitalize()}s:")
        for name, entry in sorted(registry.entries[kind].items()):
            p = entry.provider
            print(f"  {name:<22} {p.distribution} {p.version}  ({p.plugin})")
    if registry.conflicts:
        print("Conflicting names (unusable until one provider is uninstalled):")
        for (kind, name), providers in sorted(registry.conflicts.items()):
            who = ", ".join(f"{p.distribution} {p.version}" for p in providers)
            print(f"  {kind} {name!r}: {who}")
    if registry.failures:
        print("Failed to load:")
        for failure in registry.failures:
            print(f"  {failure.describe()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nnframe", description="Train and use multilayer perceptrons "
                     "whose activations and costs are plugins.")
    parser.add_argument("--version", action="version", version=f"nnframe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("plugins", help="list installed activations and costs",
                       description="List every activation and cost with the distribution "
                       "that provides it, and any plugin that failed to load.")
    p.set_defaults(func=_cmd_plugins)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except NNFrameError as exc:
        print(f"nnframe: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nnframe: interrupted", file=sys.stderr)
        return 130
