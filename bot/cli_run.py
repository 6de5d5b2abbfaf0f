"""`deskbot run` (placeholder until its issue lands)."""

import argparse
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("run", help="(not implemented yet)")
    parser.set_defaults(func=_todo)


def _todo(args: argparse.Namespace) -> int:
    print("not implemented yet")
    return 1
