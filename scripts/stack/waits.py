"""Waiting for a component to answer: poll a real probe (through tenacity) until it passes, and fail
with one clear line on a timeout or when the component's process has exited."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tenacity import Retrying, retry_if_exception_type, retry_if_not_result, stop_after_delay, stop_any, wait_fixed

from .console import Every, detail
from .errors import StackError
from .processes import read_pid


def wait_until(check: Callable[[], bool], *, component: str, what: str, timeout: float,
               log: Path | None = None, pid_name: str | None = None, interval: float = 0.5) -> float:
    """Poll `check` until it returns True; fail with one clear line on timeout or process death.
    Returns the seconds it took."""
    start = time.monotonic()
    notes = Every(10)

    def exited(state=None) -> bool:
        return pid_name is not None and read_pid(pid_name) is None

    def note(state) -> None:
        if notes.due():
            detail(f"waiting for {component} to be {what} ({state.seconds_since_start:.0f}s)")

    def fail(state) -> None:
        if exited():
            raise StackError(component, f"process exited before {what}", log)
        raise StackError(component, f"not {what} after {timeout:.0f}s", log)

    Retrying(
        # Any failure of a probe (an exception or a false answer) just means "not yet".
        retry=retry_if_exception_type() | retry_if_not_result(bool),
        stop=stop_any(stop_after_delay(timeout), exited),
        wait=wait_fixed(interval), before_sleep=note, retry_error_callback=fail,
    )(check)
    return time.monotonic() - start
