"""`python -m profilers`: the headless CLI, a shell over the commands.

The core's commands live in ``profilers/commands/``, each lab's in its folder (``labs/<kind>/cli.py``, found
through the registry); each module has ``register(subparsers)`` and its handlers import torch only when they
run. Bad input of any kind gets one line on stderr naming the problem and the fix, exit code 2, and an
unchanged store.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from . import registry
from .commands import cluster, corpus, machine, runs, store
from .commands.base import EXIT_USAGE, PROG, UsageError
from .spec import SpecError
from .store import StoreError

CORE_COMMANDS = (runs, machine, corpus, store, cluster)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        if "expected one argument" in message:
            message += " (a value that starts with '-' is written --flag=VALUE)"
        raise UsageError(f"{message}: see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m profilers", description="NormScope: profile normalization layers.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in CORE_COMMANDS:
        module.register(sub)
    for lab in registry.LABS:  # the kernel sweep's `run`, then one command per lab
        lab.part("cli").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except (UsageError, SpecError, StoreError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
