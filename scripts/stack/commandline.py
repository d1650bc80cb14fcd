"""The harness's command lines (click): `python -m scripts.stack`, its image tools, scripts/chart_docs and
scripts/bench run their click command the way the product's `simplecqrs` does (app.cli.exit_code), and
a StackError becomes one line and exit code 1."""
from __future__ import annotations

import sys

import click

from app.cli import exit_code

from .errors import StackError


def run_click(command: click.Command, argv: list[str] | None, prog_name: str) -> int:
    """app.cli.exit_code (the command's code, 2 for a usage error, 130 when interrupted), and 1 with one
    line for a StackError."""
    try:
        return exit_code(command, argv, prog_name)
    except StackError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
