"""The local stack's one error: a component, what went wrong, where its log is.  A leaf: it imports
nothing else of the stack."""
from __future__ import annotations

from pathlib import Path


class StackError(RuntimeError):
    """One clear line: component, reason, log file."""

    def __init__(self, component: str, reason: str, log: Path | None = None):
        where = f" (log: {log})" if log else ""
        super().__init__(f"{component}: {reason}{where}")
        self.component = component
