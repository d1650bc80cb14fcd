"""The local stack's listening ports: whether one is taken, and the bounded wait before a start for
the ports an old process has not released yet.  Sockets through psutil, the wait through tenacity."""
from __future__ import annotations

import psutil
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from .console import detail
from .errors import StackError

_EVERY_ADDRESS = ("0.0.0.0", "::")


def listening(host: str = "127.0.0.1") -> set[int]:
    """The TCP ports with a socket listening on `host`, or on every address (which includes it), in
    this network namespace.  A listener counts whoever holds it, a zombie's surviving thread
    included (processes.pid_alive).  Not a port that only an iptables rule answers on (kube-proxy's
    NodePorts on 127.0.0.1): nothing of ours would fail to bind it."""
    addresses = {host, f"::ffff:{host}", *_EVERY_ADDRESS}
    return {c.laddr.port for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.ip in addresses}


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on host:port (see listening())."""
    return port in listening(host)


def require_ports_free(component: str, *ports: int, timeout: float = 30) -> None:
    """Before a start: wait (bounded) for the ports to be free, e.g. released by a process that
    just exited; then fail with one clear line naming the ports still in use."""
    def busy() -> list[int]:
        taken = listening()
        return [p for p in ports if p in taken]

    def note_once(state) -> None:
        if state.attempt_number == 1:
            detail(f"{component}: waiting for port(s) {state.outcome.result()} to be released (at most {timeout:.0f}s)")

    def still_busy(state) -> None:
        raise StackError(component, f"port(s) {', '.join(f'127.0.0.1:{p}' for p in state.outcome.result())} still "
                                    f"in use by another process after {timeout:.0f}s")

    Retrying(retry=retry_if_result(bool), stop=stop_after_delay(timeout), wait=wait_fixed(0.5),
             before_sleep=note_once, retry_error_callback=still_busy)(busy)
