"""The image (issue 6): the Dockerfile read as text, then the image built for real and run.

The image is built for real (scripts/stack/images.py: BuildKit on this
checkout's dockerd, FROM a debootstrapped Debian base, no registry) and its
containers run with `docker run --network host` against the local stores.
The operator's container runs against the stack's kube-apiserver.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import settings_env
from support import APP_CHART, KUBECONFIG, OPERATOR_CHART, ROOT, docs, render, run

from scripts.stack import images
from scripts.stack.instance import ProcessDied, relay_login, wait_for

pytestmark = pytest.mark.timeout(900)


# ================================================================ Dockerfile
class Instruction:
    def __init__(self, cmd: str, args: str, line: int):
        self.cmd, self.args, self.line = cmd, args, line

    def __repr__(self):
        return f"{self.cmd} {self.args}"

    def flags(self) -> tuple[dict[str, str], str]:
        """--from=x --mount=... before the arguments -> ({'from': 'x', 'mount': ...}, rest)."""
        rest, flags = self.args, {}
        while rest.startswith("--"):
            word, _, rest = rest.partition(" ")
            k, _, v = word[2:].partition("=")
            flags[k] = v
            rest = rest.lstrip()
        return flags, rest


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped (escape char `\\`)."""
    out, buf, start = [], "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        cmd, _, args = buf.partition(" ")
        out.append(Instruction(cmd.upper(), args.strip(), start))
        buf = ""
    assert not buf, "Dockerfile ends inside a continued line"
    return out


def stages(instrs: list[Instruction]) -> tuple[dict[str, str], list[dict]]:
    """Global ARGs, and the stages [{'name', 'from', 'instrs'}]."""
    global_args, out = {}, []
    for i in instrs:
        if i.cmd == "FROM":
            words = i.args.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), ""), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(out))
            out.append({"name": name, "from": image, "instrs": []})
        elif not out:
            assert i.cmd == "ARG", f"only ARG may precede FROM, not {i}"
            k, _, v = i.args.partition("=")
            global_args[k] = v
        else:
            out[-1]["instrs"].append(i)
    return global_args, out


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def _docker_pattern(p: str) -> re.Pattern:
    """A .dockerignore pattern as a regex: Go's filepath.Match plus `**` for any number of directories."""
    out, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif p.startswith("**", i):
            out, i = out + ".*", i + 2
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(p[i]), i + 1
    return re.compile(out)


def dockerignored(rel: str, patterns: list[str]) -> bool:
    """Whether the build context leaves `rel` out: a pattern matching the path or one of its
    parent directories excludes it; the last matching pattern wins (`!` re-includes)."""
    parts = rel.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for p in patterns:
        neg = p.startswith("!")
        rx = _docker_pattern(p.lstrip("!").strip("/"))
        if any(rx.fullmatch(c) for c in candidates):
            ignored = not neg
    return ignored


DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def dockerfile():
    global_args, st = stages(parse_dockerfile(DOCKERFILE.read_text()))
    return {"args": global_args, "stages": st, "final": st[-1]}


def stage_env(stage: dict) -> dict[str, str]:
    env = {}
    for i in stage["instrs"]:
        if i.cmd == "ENV":
            for word in shlex.split(i.args):
                k, _, v = word.partition("=")
                env[k] = v
    return env


def test_dockerfile_multistage_pinned_slim_base(dockerfile):
    images = {s["from"] for s in dockerfile["stages"]}
    assert len(dockerfile["stages"]) >= 2, "multi-stage build expected"
    assert len(images) == 1, f"every stage from the same base: {images}"
    (base,) = images
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), f"a slim Python base pinned to a patch: {base}"


def test_dockerfile_final_stage_runtime_contract(dockerfile):
    final = dockerfile["final"]
    env = stage_env(final)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1" and env.get("PYTHONUNBUFFERED") == "1"
    # gunicorn's settings come from the environment (app/gunicorn_conf.py reads them as app/config.py declares).
    from app.config import VARIABLES

    gunicorn = {v.name for v in VARIABLES if v.group == "gunicorn"}
    for var in ("GUNICORN_WORKERS", "GUNICORN_THREADS", "API_BIND"):
        assert var in env and var in gunicorn, var
    # A numeric, non-root user, declared after everything that needs root.
    users = [i for i in final["instrs"] if i.cmd == "USER"]
    assert users and final["instrs"][-1].cmd in ("CMD", "USER", "EXPOSE", "LABEL", "ENTRYPOINT")
    uid = users[-1].args.split(":")[0]
    uid = re.sub(r"\$\{?(\w+)\}?", lambda m: next(i.args.split("=")[1] for i in final["instrs"]
                                                   if i.cmd == "ARG" and i.args.startswith(m.group(1) + "=")), uid)
    assert uid.isdigit() and int(uid) >= 1000, f"numeric non-root USER expected, got {users[-1].args}"
    assert not any(i.cmd == "RUN" for i in final["instrs"][final["instrs"].index(users[-1]):]), "RUN after USER"
    # No compilers or package installs in the final stage; everything comes from the deps stage.
    runs = " ".join(i.args for i in final["instrs"] if i.cmd == "RUN")
    for word in ("apt-get", "apk ", "gcc", "g++", "build-essential", "clang", "pip install", "make "):
        assert word not in runs, f"final stage runs {word!r}"
    copies = [i.flags() for i in final["instrs"] if i.cmd == "COPY"]
    assert any(f.get("from") == dockerfile["stages"][0]["name"] for f, _ in copies), "venv copied from the deps stage"
    # Exec-form CMD (PID 1 is the Python process and receives SIGTERM itself).
    (cmd,) = [i for i in final["instrs"] if i.cmd == "CMD"]
    argv = json.loads(cmd.args)
    assert argv == ["simplecqrs", "api"], argv   # app/cli.py: execs gunicorn in its own place
    assert not any(i.cmd == "ENTRYPOINT" and not i.args.startswith("[") for i in final["instrs"])


def test_dockerfile_builds_without_a_registry_and_takes_the_ca_as_a_secret(dockerfile):
    """No `# syntax=` directive (BuildKit would pull the frontend image from Docker Hub); the base
    is a build argument (images.py passes the local one); pip gets the proxy's CA only from the
    optional build secret, never from a COPY or an ENV."""
    text = DOCKERFILE.read_text()
    assert not re.search(r"(?im)^#\s*syntax\s*=", text), "a syntax directive pulls a frontend image"
    assert "PYTHON_IMAGE" in dockerfile["args"]
    assert all(re.search(r"\bFROM \$\{?PYTHON_IMAGE\}?\b", text) for _ in dockerfile["stages"])
    pip = [i for st in dockerfile["stages"] for i in st["instrs"] if i.cmd == "RUN" and "pip install" in i.args]
    assert len(pip) == 1, pip
    flags = re.findall(r"--mount=(\S+)", pip[0].args)
    secret = [f for f in flags if "type=secret" in f]
    assert secret and f"id={images.CA_SECRET_ID}" in secret[0] and "required=false" in secret[0], flags
    assert f"PIP_CERT=/run/secrets/{images.CA_SECRET_ID}" in pip[0].args
    for st in dockerfile["stages"]:
        assert "PIP_CERT" not in stage_env(st), "PIP_CERT in ENV would outlive the build step"
        for i in st["instrs"]:
            assert not (i.cmd in ("COPY", "ADD") and ("ca-certificates" in i.args or ".crt" in i.args)), i


def test_dockerfile_copies_exist_and_context_excludes_local_state(dockerfile):
    patterns = dockerignore_patterns()
    for st in dockerfile["stages"]:
        for i in st["instrs"]:
            if i.cmd != "COPY":
                continue
            flags, rest = i.flags()
            if "from" in flags:
                continue
            *srcs, _dest = shlex.split(rest)
            for src in srcs:
                assert (ROOT / src).exists(), f"Dockerfile line {i.line}: {src} does not exist"
                assert not dockerignored(src, patterns), f"{src} is copied but .dockerignore excludes it"
    for rel in (".git", ".venv", ".local/data", "tests/test_image.py", "app/__pycache__/x.pyc",
                "consumer/__pycache__", ".pytest_cache", "k8s/dev/base/secrets/mysql.env", "docs/notes.md"):
        assert dockerignored(rel, patterns), f".dockerignore lets {rel} into the build context"
    for rel in ("pyproject.toml", "app/wsgi.py", "consumer/main.py", "k8s/operator/simplecqrs_operator/__init__.py"):
        assert not dockerignored(rel, patterns), f".dockerignore excludes {rel}, which the image needs"


# ================================================================ image: built and run for real
# The image is built by scripts/stack/images.py: a BuildKit `docker build` of the Dockerfile on this
# checkout's dockerd (started here if it is not running, stopped at the end if so), FROM a Debian
# bookworm root made by debootstrap and `docker import`ed (no registry is reachable here), with the
# host's CA bundle as the build secret pip needs behind the intercepting proxy.  Every test below
# runs the real image: `docker run --rm --network host` (dockerd has no bridge), root filesystem
# read-only and /tmp a tmpfs, as the pods run it.
IMAGE_TAG = os.environ.get("SIMPLECQRS_TEST_IMAGE", images.DEFAULT_TAG)


@pytest.fixture(scope="session")
def built_image():
    started = images.ensure_dockerd()
    try:
        t0 = time.monotonic()
        archive = images.build_image(IMAGE_TAG)
        print(f"\n{IMAGE_TAG} built in {time.monotonic() - t0:.0f}s: {archive}")
        yield {"tag": IMAGE_TAG, "archive": archive}
    finally:
        if started:
            images.Dockerd().stop()


@pytest.fixture(scope="module")
def image(built_image):
    """The built image's configuration (docker image inspect)."""
    (info,) = json.loads(images.docker("image", "inspect", built_image["tag"]).stdout)
    config = info["Config"]
    labels = config.get("Labels") or {}
    env = dict(e.split("=", 1) for e in config.get("Env") or [])
    entrypoints = {k.rsplit(".", 1)[1]: shlex.split(v) for k, v in labels.items()
                   if k.startswith("io.simplecqrs.entrypoint.")}
    return {**built_image, "info": info, "env": env, "cmd": config["Cmd"], "user": config.get("User"),
            "workdir": config.get("WorkingDir"), "labels": labels, "entrypoints": entrypoints}


def docker_run_argv(image, argv: list[str], *, env: dict | None = None, name: str | None = None,
                    mounts: dict[Path, str] | None = None) -> list[str]:
    """`docker run` as the pods run the image: host network (no bridge here), read-only root, /tmp a
    tmpfs (the charts' emptyDir).  Environment values travel through the CLI's own environment
    (`-e NAME`), never on its command line."""
    out = [images.DOCKER, "run", "--rm", "--network=host", "--read-only", "--tmpfs=/tmp:mode=1777",
           "--stop-timeout=30"]
    if name:
        out += ["--name", name]
    for k in env or {}:
        out += ["-e", k]
    for src, dest in (mounts or {}).items():
        out += ["-v", f"{src}:{dest}:ro"]
    return [*out, image["tag"], *argv]


def docker_run(image, argv: list[str], *, env: dict | None = None, timeout: float = 120,
               check: bool = True) -> subprocess.CompletedProcess:
    return run(docker_run_argv(image, argv, env=env), env={**images.docker_env(), **(env or {})},
               timeout=timeout, check=check)


IMAGE_CHECK = r"""
import importlib.util, json, os, shutil, sys
labels = json.loads(sys.argv[1])
out = {}
for name, argv in labels.items():
    exe = shutil.which(argv[0])
    mods = [argv[i + 1] for i, a in enumerate(argv) if a == "-m"]
    mods += [a.split(":")[0] for a in argv[1:] if ":" in a and not a.startswith("python:")]
    mods += [a.split(":", 1)[1] for a in argv[1:] if a.startswith("python:")]
    if os.path.basename(argv[0]) == "simplecqrs":   # the console script's module (pyproject [project.scripts])
        mods.append("app.cli")
    out[name] = {"exe": exe and os.path.realpath(exe), "missing": [m for m in mods if importlib.util.find_spec(m) is None]}
print(json.dumps(out))
"""


def test_image_builds_from_the_local_base_and_saves_an_importable_archive(image):
    """A real build: the runtime stage is the local base (Debian's Python 3.11), the archive is a
    `docker save` of the tag (what `ctr -n k8s.io images import` reads)."""
    import tarfile

    assert image["info"]["Os"] == "linux" and image["info"]["Architecture"] in ("amd64", "arm64")
    version = docker_run(image, ["python", "-c", "import sys; print(sys.version_info[:2])"]).stdout.strip()
    assert version == "(3, 11)", version
    with tarfile.open(image["archive"]) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    tags = [t for m in manifest for t in m.get("RepoTags") or []]
    assert image["tag"] in tags or f"docker.io/library/{image['tag']}" in tags, tags


def test_image_install_steps_from_pyproject_in_fresh_venv(image):
    """The deps stage installed exactly pyproject's pinned runtime dependencies, wheels only."""
    import tomllib

    assert image["env"].get("VIRTUAL_ENV") == "/opt/venv"
    assert image["env"]["PATH"].startswith("/opt/venv/bin:"), image["env"]["PATH"]
    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all("==" in d for d in pinned), "the runtime dependencies must be pinned exactly"
    frozen = docker_run(image, ["python", "-m", "pip", "freeze", "--all"]).stdout.lower().replace("_", "-")
    for dep in pinned:
        assert dep.lower().replace("_", "-") in frozen.splitlines(), f"{dep} not installed as pinned"
    assert "--only-binary=:all:" in DOCKERFILE.read_text(), "wheels only: no compiler needed in any stage"
    # The project itself is not installed into the venv: its code is copied to /app.
    assert "simplecqrs" not in frozen
    # The layout of the final stage, and no caches leaked into it.
    assert image["workdir"] == "/app"
    layout = docker_run(image, ["python", "-c", (
        "import os, sys; rels = sys.argv[1:]; print([r for r in rels if not os.path.isfile(r)]);"
        "print([d for d, _, _ in os.walk('/app') if d.endswith('__pycache__')])"),
        "app/wsgi.py", "app/writemodel/migrations/0001_initial.sql", "consumer/main.py",
        "simplecqrs_operator/main.py", "app/cli.py"]).stdout.splitlines()
    assert layout == ["[]", "[]"], layout


def test_image_runs_as_the_numeric_non_root_user(image):
    assert image["user"] == "10001:10001", image["user"]
    ids = docker_run(image, ["python", "-c", "import os; print(os.getuid(), os.getgid(), os.access('/app', os.W_OK))"])
    assert ids.stdout.split() == ["10001", "10001", "False"], ids.stdout


def test_image_does_not_contain_the_build_ca_secret(image):
    """The proxy CA reached pip as a build secret: no file in the image is the host's bundle, and
    neither the config nor the history names it."""
    host = images.CA_BUNDLE.read_bytes() if images.CA_BUNDLE.is_file() else b""
    if not host:
        pytest.skip(f"no {images.CA_BUNDLE} on this machine")
    assert "PIP_CERT" not in image["env"] and "/run/secrets" not in json.dumps(image["info"]["Config"])
    history = images.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image["tag"]).stdout
    assert "ca-certificates.crt" not in history
    import hashlib

    found = docker_run(image, ["python", "-c", (
        "import hashlib, os, sys; size, digest = int(sys.argv[1]), sys.argv[2]\n"
        "for top in ('/etc', '/opt', '/app', '/usr', '/root', '/run'):\n"
        "    for d, _, files in os.walk(top):\n"
        "        for f in files:\n"
        "            p = os.path.join(d, f)\n"
        "            try:\n"
        "                if os.path.isfile(p) and os.path.getsize(p) == size and "
        "hashlib.sha256(open(p, 'rb').read()).hexdigest() == digest: print(p)\n"
        "            except OSError: pass"), str(len(host)), hashlib.sha256(host).hexdigest()]).stdout
    assert not found.strip(), f"the host CA bundle is in the image: {found}"


def test_image_entrypoints_are_named_and_match_the_workloads(image):
    eps = image["entrypoints"]
    assert set(eps) == {"api", "relay", "consumer", "operator"}, eps
    assert eps["api"] == image["cmd"], "the default CMD is the API"
    assert not image["info"]["Config"].get("Entrypoint"), "no ENTRYPOINT: the pods' `command` picks the process"
    # Every label names a command that exists in the image: the executable on the image's PATH,
    # inside the venv or the base, and every module it runs importable from /app.
    found = json.loads(docker_run(image, ["python", "-c", IMAGE_CHECK, json.dumps(eps)]).stdout)
    for name, argv in eps.items():
        assert found[name]["exe"], f"{name}: {argv[0]} is not on the image's PATH"
        assert found[name]["exe"].startswith(("/opt/venv/", "/usr/")), (name, found[name])
        assert not found[name]["missing"], f"{name}: modules not importable in the image: {found[name]}"
    # The commands the workloads run are the image's entry points.
    sys.path.insert(0, str(ROOT / "k8s" / "operator"))
    from simplecqrs_operator import children

    assert children.API_COMMAND == eps["api"]
    assert children.CONSUMER_COMMAND == eps["consumer"]
    if hasattr(children, "RELAY_COMMAND"):
        assert children.RELAY_COMMAND == eps["relay"]
    (op,) = [o for o in render(OPERATOR_CHART, []) if o["kind"] == "Deployment"]
    assert op["spec"]["template"]["spec"]["containers"][0]["command"] == eps["operator"]
    manifest = [d for d in docs((ROOT / "k8s" / "operator" / "deployment.yaml").read_text())
                if d["kind"] == "Deployment"]
    assert manifest[0]["spec"]["template"]["spec"]["containers"][0]["command"] == eps["operator"]


@pytest.mark.parametrize("name", ["api", "relay", "consumer", "operator"])
def test_image_entrypoint_answers_help(image, name):
    """Each entry point is a subcommand of the image's `simplecqrs` (click's help, read before any setting)."""
    argv = image["entrypoints"][name]
    proc = docker_run(image, [*argv, "--help"], timeout=120)
    assert "usage:" in proc.stdout.lower(), proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Container:
    """An attached `docker run` of the image (the CLI process lives as long as the container)."""

    def __init__(self, image, name: str, argv: list[str], env: dict, tmp_path: Path,
                 mounts: dict[Path, str] | None = None):
        self.name = f"simplecqrs-test-{name}-{os.getpid()}-{free_port()}"
        self.log = tmp_path / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(docker_run_argv(image, argv, env=env, name=self.name, mounts=mounts),
                                         env={**images.docker_env(), **env}, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def poll(self) -> int | None:
        return self.proc.poll()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM to the container's PID 1 (as the kubelet sends it), then wait for its exit code."""
        if self.proc.poll() is None:
            images.docker("kill", "--signal=TERM", self.name, check=False)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                images.docker("kill", self.name, check=False)
                self.proc.wait(30)
                raise AssertionError(f"{self.name}: no graceful exit within {timeout}s of SIGTERM") from None
        return self.proc.returncode


def wait_http(url: str, timeout: float, proc, log: Path) -> None:
    import requests

    def answers() -> bool:
        if proc.poll() is not None:
            raise ProcessDied(f"exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        return requests.get(url, timeout=2).status_code == 200

    try:
        wait_for(answers, timeout, f"{url} to answer 200", interval=0.3)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{log.read_text()[-3000:]}") from None


def test_image_processes_round_trip_and_stop_gracefully(image, settings, tmp_path):
    """The API (default CMD), the relay and the consumer, each in a container of the real image,
    on the real stores (127.0.0.1, host network): health endpoints answer, the helm test script
    (charts/simplecqrs/files/roundtrip.py) posts an order and reads it back from a container too,
    and every process exits 0 on SIGTERM."""
    stores = {k: v for k, v in settings_env(settings).items()
              if k.startswith(("MYSQL_", "KAFKA_", "CASSANDRA_"))}
    api_port, relay_port, consumer_port = free_port(), free_port(), free_port()
    api = Container(image, "api", image["cmd"], dict(
        stores, API_BIND=f"127.0.0.1:{api_port}", GUNICORN_WORKERS="2", GUNICORN_THREADS="4",
        PROMETHEUS_MULTIPROC_DIR="/tmp/metrics"), tmp_path)
    relay_user, relay_password = relay_login(settings)  # the relay's own user, as the operator gives it
    relay = Container(image, "relay", image["entrypoints"]["relay"], dict(
        stores, MYSQL_USER=relay_user, MYSQL_PASSWORD=relay_password, OUTBOX_METRICS_HOST="127.0.0.1",
        OUTBOX_METRICS_PORT=str(relay_port)), tmp_path)
    consumer = Container(image, "consumer", image["entrypoints"]["consumer"], dict(
        stores, CONSUMER_METRICS_HOST="127.0.0.1", CONSUMER_METRICS_PORT=str(consumer_port)), tmp_path)
    procs = {"api": api, "relay": relay, "consumer": consumer}
    try:
        wait_http(f"http://127.0.0.1:{api_port}/healthz", 90, api, api.log)
        wait_http(f"http://127.0.0.1:{api_port}/readyz", 60, api, api.log)
        wait_http(f"http://127.0.0.1:{relay_port}/healthz", 60, relay, relay.log)
        wait_http(f"http://127.0.0.1:{consumer_port}/healthz", 90, consumer, consumer.log)
        wait_http(f"http://127.0.0.1:{consumer_port}/readyz", 30, consumer, consumer.log)
        script = (APP_CHART / "files" / "roundtrip.py").read_text()
        # As the helm test pod runs it: `python -c <script>` in the image, standard library only.
        proc = docker_run(image, ["python", "-c", script], timeout=120, check=False, env={
            "SIMPLECQRS_API_URL": f"http://127.0.0.1:{api_port}", "SIMPLECQRS_TEST_TIMEOUT": "90"})
        assert proc.returncode == 0 and "read back order" in proc.stdout, (
            f"{proc.stdout}{proc.stderr}\n" + "\n".join(f"--- {n}\n{p.log.read_text()[-3000:]}"
                                                      for n, p in procs.items()))
        import requests

        metrics = requests.get(f"http://127.0.0.1:{api_port}/metrics", timeout=5).text
        assert "simplecqrs_http_requests_total" in metrics and "simplecqrs_outbox_backlog" in metrics
        cmetrics = requests.get(f"http://127.0.0.1:{consumer_port}/metrics", timeout=5).text
        assert "simplecqrs_consumer_projection_delay_seconds" in cmetrics
    finally:
        rcs = {name: p.stop() for name, p in procs.items()}
    for name, rc in rcs.items():
        assert rc == 0, f"{name} exited {rc} on SIGTERM:\n{procs[name].log.read_text()[-3000:]}"


def test_image_operator_starts_and_answers_liveness(image, crds, namespace, tmp_path):
    """The operator entry point, in a container of the real image, on the local apiserver (host
    network): namespaced to this run's namespace (no OrderService there; other tests' instances
    stay untouched), standalone.  The kubeconfig (certificates embedded) is mounted read-only,
    readable by the image's user."""
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.read_text())
    kubeconfig.chmod(0o644)
    proc = Container(image, "operator", image["entrypoints"]["operator"], {
        "KUBECONFIG": "/etc/simplecqrs/kubeconfig", "WATCH_NAMESPACE": namespace,
        "SIMPLECQRS_OPERATOR_STANDALONE": "1", "SIMPLECQRS_OPERATOR_LIVENESS": f"http://127.0.0.1:{port}/healthz"},
        tmp_path, mounts={kubeconfig: "/etc/simplecqrs/kubeconfig"})
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, proc, proc.log)
    finally:
        rc = proc.stop()
    assert rc == 0, proc.log.read_text()[-3000:]
