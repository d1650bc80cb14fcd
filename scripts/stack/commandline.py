"""The harness's command lines (click): one way to run a click command and turn its outcome into an exit
code, for `python -m scripts.stack`, its image tools, scripts/chart_docs and scripts/bench."""
from __future__ import annotations

import sys

import click

from .errors import StackError


def run_click(command: click.Command, argv: list[str] | None, prog_name: str) -> int:
    """The command's exit code (0 when it returns nothing; its own code for --help), 2 for a usage error
    with click's message, 1 with one line for a StackError, 130 when interrupted."""
    try:
        return command.main(args=argv, prog_name=prog_name, standalone_mode=False) or 0
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:                     # Ctrl-C
        click.echo("Aborted!", err=True)
        return 130
    except StackError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
