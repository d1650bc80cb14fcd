"""Shared plumbing for the local stack: paths, processes, waits, progress.

Standard library only: `make up` runs this before the project's virtualenv
exists.  Every component module (mariadb, kafka, cassandra, kube, ...) builds
on these helpers so that pid files, logs and timeouts behave the same way for
all of them.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = Path(os.environ.get("SIMPLECQRS_LOCAL", ROOT / ".local"))
CACHE = Path(os.environ.get("SIMPLECQRS_CACHE", Path.home() / ".cache" / "simplecqrs"))
BIN = LOCAL / "bin"          # links to tools built into CACHE
DATA = LOCAL / "data"        # one sub-folder per component
LOGS = LOCAL / "logs"
RUN = LOCAL / "run"          # pid files
ETC = LOCAL / "etc"          # generated configuration, certificates, credentials
KUBECONFIG = LOCAL / "kubeconfig"
# The team's reference files (Strimzi CRDs, the skaffold schema) that tests compare with: beside
# the checkout, as CI clones it; SIMPLECQRS_REF_DIR for a checkout elsewhere.
REF = Path(os.environ.get("SIMPLECQRS_REF_DIR", ROOT.parent / "shared" / "ref"))
JAVA17_HOME = Path(os.environ.get("SIMPLECQRS_JAVA17_HOME", "/usr/lib/jvm/java-17-openjdk-amd64"))


class StackError(RuntimeError):
    """One clear line: component, reason, log file."""

    def __init__(self, component: str, reason: str, log: Path | None = None):
        where = f" (log: {log})" if log else ""
        super().__init__(f"{component}: {reason}{where}")
        self.component = component


def ensure_dirs() -> None:
    for d in (BIN, DATA, LOGS, RUN, ETC, CACHE):
        d.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------- output
def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def detail(msg: str) -> None:
    print(f"    {msg}", flush=True)


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
        last = start
        while proc.poll() is None:
            time.sleep(1)
            now = time.monotonic()
            if now - start > timeout:
                proc.kill()
                raise StackError(what, f"timed out after {timeout:.0f}s", log)
            if now - last >= 15:
                last = now
                against = f" of ~{expected:.0f}s last time" if expected else ""
                print(f"    ... {what}: {now - start:.0f}s{against}, {tail(log, 1)[:100]}", flush=True)
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


# ---------------------------------------------------------------- processes
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
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); treat it as gone, but only once every thread
    # has exited: a JVM's main thread can be a zombie while its other threads still hold the
    # process's sockets (a restart then found Cassandra's JMX port in use).
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] != "Z":
                return True
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until the process and all its threads are gone; False if still there after `timeout`."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    try:  # reap it if it is our child: orphaned zombies are not reaped by every init (this sandbox's is not)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return True


def spawn(name: str, argv: list[str], *, env: dict | None = None, cwd: Path | None = None) -> int:
    """Start a daemon in its own session, log to .local/logs/<name>.log, record its pid."""
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    log = log_file(name)
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
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
    # signalling the group also reaches helper children (e.g. mysqld_safe's mysqld).
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------- waits
def wait_until(check: Callable[[], bool], *, component: str, what: str, timeout: float,
               log: Path | None = None, pid_name: str | None = None, interval: float = 0.5) -> float:
    """Poll `check` until it returns True; fail with one clear line on timeout or process death."""
    start = time.monotonic()
    last_note = start
    while True:
        try:
            if check():
                return time.monotonic() - start
        except Exception:  # noqa: BLE001 - any failure of a probe just means "not yet"
            pass
        now = time.monotonic()
        if pid_name is not None and read_pid(pid_name) is None:
            raise StackError(component, f"process exited before {what}", log)
        if now - start > timeout:
            raise StackError(component, f"not {what} after {timeout:.0f}s", log)
        if now - last_note >= 10:
            last_note = now
            detail(f"waiting for {component} to be {what} ({now - start:.0f}s)")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly n bytes from a socket (the protocol probes' framing)."""
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the server")
        buf += chunk
    return buf


def require_ports_free(component: str, *ports: int, timeout: float = 30) -> None:
    """Before a start: wait (bounded) for the ports to be free, e.g. released by a process that
    just exited; then fail with one clear line naming the ports still in use."""
    deadline = time.monotonic() + timeout
    noted = False
    while busy := [p for p in ports if port_open(p)]:
        if time.monotonic() > deadline:
            raise StackError(component, f"port(s) {', '.join(f'127.0.0.1:{p}' for p in busy)} still in use by "
                                        f"another process after {timeout:.0f}s")
        if not noted:
            detail(f"{component}: waiting for port(s) {busy} to be released (at most {timeout:.0f}s)")
            noted = True
        time.sleep(0.5)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    root_s = str(Path(root).resolve())
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return sorted((p for p in points if p == root_s or p.startswith(root_s + "/")), key=len, reverse=True)


def unmount_under(root: Path) -> None:
    """Unmount everything mounted at or below `root` (pod volumes, container roots, netns files)."""
    for point in mounts_under(root):
        subprocess.run(["umount", "-l", point], capture_output=True)


def which(tool: str) -> str | None:
    return shutil.which(tool)


def link_tool(src: Path, name: str | None = None) -> Path:
    """Make .local/bin/<name> point at a tool in the per-user cache."""
    BIN.mkdir(parents=True, exist_ok=True)
    dst = BIN / (name or src.name)
    if dst.is_symlink() or dst.exists():
        if dst.resolve() == src.resolve():
            return dst
        dst.unlink()
    dst.symlink_to(src)
    return dst


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link a cached file into a build context, or copy it when the two are on other filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# ---------------------------------------------------------------- components
@dataclass
class Status:
    name: str
    state: str      # running | stopped | not installed
    address: str
    version: str
    log: str


class Component:
    """A local service: installed into the cache, started as a daemon, probed for real."""

    name: str = ""
    address: str = ""
    start_timeout: float = 120
    process: bool = True    # False: not a daemon of ours (network setup, objects in the cluster)

    def install(self) -> None:
        """Idempotent: fetch/build what is missing into CACHE, link tools into .local/bin."""

    def start(self) -> None:
        raise NotImplementedError

    def ready(self) -> bool:
        """A real request (a query, a metadata call, a GET), not just an open port."""
        raise NotImplementedError

    def version(self) -> str:
        return "?"

    def stop(self) -> None:
        stop(self.name)

    # -- shared behaviour
    @property
    def log(self) -> Path:
        return log_file(self.name)

    def running(self) -> bool:
        return read_pid(self.name) is not None

    def up(self) -> None:
        if self.running() and self._ready_quietly():
            detail(f"{self.name} answering on {self.address}")
            return
        if not self.running():
            say(f"starting {self.name}")
            self.start()
        self.wait_ready()

    def wait_ready(self) -> None:
        took = wait_until(self.ready, component=self.name, what="answering", timeout=self.start_timeout,
                          log=self.log, pid_name=self.name if self.process else None)
        detail(f"{self.name} answering on {self.address} after {took:.1f}s")

    def _ready_quietly(self) -> bool:
        try:
            return bool(self.ready())
        except Exception:  # noqa: BLE001
            return False

    def status(self) -> Status:
        if self.running():
            state = "running" if self._ready_quietly() else "starting/unhealthy"
        else:
            state = "stopped"
        try:
            version = self.version()
        except Exception:  # noqa: BLE001
            version = "?"
        return Status(self.name, state, self.address, version, str(self.log.relative_to(ROOT))
                      if self.log.is_relative_to(ROOT) else str(self.log))


def print_table(rows: list[Status]) -> None:
    headers = ("component", "state", "address", "version", "log")
    data = [headers] + [(r.name, r.state, r.address, r.version, r.log) for r in rows]
    widths = [max(len(str(row[i])) for row in data) for i in range(len(headers))]
    for i, row in enumerate(data):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()
