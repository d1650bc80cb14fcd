"""What the local stack prints while it works: a step (`==> ...`), a detail under it, and the pace of
the progress lines of long waits.  A leaf: it imports nothing else of the stack."""
from __future__ import annotations

import time


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def detail(msg: str) -> None:
    print(f"    {msg}", flush=True)


class Every:
    """due() is True at most once every `seconds` (counted from its creation, then from the last
    True): a long wait notes its progress at that pace, not at every poll."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._last = time.monotonic()

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True
