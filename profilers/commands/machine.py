"""`python -m profilers env|sensors`: what this machine is and can measure, and its live sensors."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .base import UsageError


def register(sub: Any) -> None:
    env = sub.add_parser("env", help="describe this machine and what NormScope can measure on it")
    env.add_argument("--json", action="store_true")

    se = sub.add_parser("sensors", help="read GPU and host sensors (live with --watch, Ctrl-C to stop)")
    se.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    se.add_argument("--interval-s", type=float, default=1.0, help="refresh period (default 1 s)")
    se.add_argument("--count", type=int, help="stop after this many readings")
    se.add_argument("--json", action="store_true", help="one JSON object per reading")
    env.set_defaults(handler=cmd_env)
    se.set_defaults(handler=cmd_sensors)


def cmd_env(a: argparse.Namespace) -> int:
    from ..measure.machine.environment import describe, format_text

    info = describe()
    if a.json:
        json.dump(info, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        print(format_text(info))
    return 0


def cmd_sensors(a: argparse.Namespace) -> int:
    from ..sensors.live import watch

    if a.interval_s <= 0 or a.interval_s > 3600:
        raise UsageError(f"--interval-s must be in (0, 3600], got {a.interval_s}")
    if a.count is not None and a.count < 1:
        raise UsageError(f"--count must be at least 1, got {a.count}")
    count = a.count if a.count is not None else (None if a.watch else 1)
    try:
        watch(a.interval_s, count, a.json)
    except KeyboardInterrupt:
        pass
    return 0
