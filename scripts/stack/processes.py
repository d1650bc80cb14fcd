"""The stack's daemons as processes: started in their own session with a pid file and a log under
.local/, found again by that pid file (never by name), stopped or killed with their process group.

Liveness and reaping through psutil; the waits through tenacity.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from . import cgroups
from .errors import StackError
from .paths import LOGS, RUN


def pid_file(name: str) -> Path:
    return RUN / f"{name}.pid"


def log_file(name: str) -> Path:
    return LOGS / f"{name}.log"


def read_pid(name: str) -> int | None:
    try:
        pid = int(pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    """Whether the process is there.  A zombie counts as gone, but only once every thread has
    exited: a JVM's main thread can be a zombie while its other threads still hold the process's
    sockets (a restart then found Cassandra's JMX port in use)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE or proc.num_threads() > 1
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until the process and all its threads are gone; False if still there after `timeout`."""
    still_there = Retrying(retry=retry_if_result(bool), stop=stop_after_delay(timeout), wait=wait_fixed(0.1),
                           retry_error_callback=lambda state: True)(pid_alive, pid)
    if still_there:
        return False
    # Reap it if it is our child: orphaned zombies are not reaped by every init (this sandbox's is
    # not).  timeout=0: reap now or not at all (another process's child stays a zombie of its parent).
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(timeout=0)
    return True


def spawn(name: str, argv: list[str], *, env: dict | None = None, cwd: Path | None = None) -> int:
    """Start a daemon in its own session and the host daemons' cgroup, log to .local/logs/<name>.log,
    record its pid."""
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    log = log_file(name)
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    cgroups.join_host(proc.pid)   # beside the pods' tree, not above it (cgroups.py)
    pid_file(name).write_text(f"{proc.pid}\n")
    return proc.pid


def stop(name: str, timeout: float = 30) -> bool:
    """Stop the process recorded in the pid file (SIGTERM, then SIGKILL). Never matches by name."""
    pid = read_pid(name)
    if pid is None:
        pid_file(name).unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    if not wait_gone(pid, timeout):
        _sigkill_and_wait(name, pid)
    pid_file(name).unlink(missing_ok=True)
    return True


def kill(name: str, sig: int = signal.SIGKILL) -> int | None:
    """Send `sig` to a recorded process (fault tests); returns the pid or None.
    After SIGKILL, returns once the process is gone (so a restart finds its ports free)."""
    pid = read_pid(name)
    if pid is not None:
        if sig == signal.SIGKILL:
            _sigkill_and_wait(name, pid)
        else:
            _signal_group(pid, sig)
    return pid


def _sigkill_and_wait(name: str, pid: int) -> None:
    _signal_group(pid, signal.SIGKILL)
    if not wait_gone(pid, 30):
        raise StackError(name, f"process {pid} still there 30s after SIGKILL")


def _signal_group(pid: int, sig: int) -> None:
    # spawn() puts each daemon in its own session, so its process group id is its pid:
    # signalling the group also reaches helper children (e.g. mysqld_safe's mysqld).  The group
    # rather than psutil's children(recursive=True): one kernel call, and it also reaches members
    # whose parent has exited already (reparented, no longer anyone's child to walk to).
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
