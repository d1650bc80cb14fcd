"""Long install and build steps (apt-get, go build, debootstrap, docker build, ...) run with a
heartbeat so they never look hung, and the lines of a log shown when one fails."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from .console import Every, detail, say
from .errors import StackError
from .paths import LOGS


def run(cmd: list[str] | str, what: str, *, cwd: Path | None = None, env: dict | None = None,
        log: Path | None = None, timeout: float = 3600, shell: bool = False, expected: float | None = None) -> float:
    """Run a long install/build step, echoing a heartbeat so it never looks hung.

    Output goes to `log` (default: .local/logs/install-<what>.log); on failure
    the last lines are printed and StackError raised.  `expected`: the seconds the same step
    took last time, shown beside the elapsed time (quiet steps such as `go build` print nothing
    else).  Returns the seconds it took.
    """
    LOGS.mkdir(parents=True, exist_ok=True)
    log = log or LOGS / f"install-{what.split()[0].lower()}.log"
    say(f"{what} (output: {log})")
    start = time.monotonic()
    start_size = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                shell=shell, stdin=subprocess.DEVNULL)
        beats = Every(15)

        def heartbeat(state) -> None:
            if beats.due():
                against = f" of ~{expected:.0f}s last time" if expected else ""
                print(f"    ... {what}: {state.seconds_since_start:.0f}s{against}, {tail(log, 1)[:100]}", flush=True)

        def timed_out(state) -> None:
            proc.kill()
            raise StackError(what, f"timed out after {timeout:.0f}s", log)

        # Poll once a second until it exits (poll() returns its code), at most `timeout` seconds.
        Retrying(retry=retry_if_result(lambda code: code is None), wait=wait_fixed(1), stop=stop_after_delay(timeout),
                 before_sleep=heartbeat, retry_error_callback=timed_out)(proc.poll)
    if proc.returncode != 0:
        # The cause is often far above the tail (a server's own [ERROR] lines, then its advice).
        for line in error_lines(log, since=start_size):
            detail(line)
        for line in tail(log, 15).splitlines():
            detail(line)
        raise StackError(what, f"exited with {proc.returncode}", log)
    took = time.monotonic() - start
    detail(f"done in {took:.0f}s")
    return took


def error_lines(path: Path, *, since: int = 0, limit: int = 12) -> list[str]:
    """The first `limit` lines after byte `since` of a log that name an error."""
    try:
        with open(path, "rb") as f:
            f.seek(since)
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if "ERROR" in line or "error:" in line.lower()][:limit]


def tail(path: Path, n: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return ""
