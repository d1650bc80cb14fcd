"""skaffold on the local node, as a developer runs it: `skaffold run -p local`, then `skaffold dev -p local`
for a bounded time with a source change in between (skaffold.yaml's profile `local`: the stack's
dockerd builds, scripts/skaffold_build.py hands the image to the node's containerd).

The profile deploys the same two releases as `make up` (simplecqrs-operator in simplecqrs-system,
simplecqrs in simplecqrs), so if `make up`'s instance is there, skaffold takes it over and its
cleanup removes it; the test then puts `make up`'s releases back.  Its source change (one line of
/healthz) is undone whatever happens.
"""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import uuid

import conftest
import pytest
import requests

from scripts.stack import core, gotools, images, node, services

# kubectl and HTTP polls: once a second is plenty (conftest's default suits local processes)
wait_for = functools.partial(conftest.wait_for, interval=2.0)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1500)]

HEALTH = core.ROOT / "app" / "api" / "health.py"
ORIGINAL = '    return jsonify({"status": "ok"})\n'


@pytest.fixture(scope="session", autouse=True)
def skaffold_built():
    """skaffold from the Go module proxy (~4 minutes once, then cached per user)."""
    gotools.ensure("skaffold")


def skaffold_env() -> dict:
    return dict(os.environ, DOCKER_HOST=f"unix://{images.DOCKER_SOCK}", KUBECONFIG=str(core.KUBECONFIG),
                PATH=f"{core.BIN}:{os.environ['PATH']}", SKAFFOLD_UPDATE_CHECK="false",
                SKAFFOLD_INTERACTIVE="false", SKAFFOLD_COLLECT_METRICS="false")


def skaffold(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    out = subprocess.run([str(core.BIN / "skaffold"), *args], cwd=core.ROOT, env=skaffold_env(), capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, f"skaffold {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def healthz() -> dict:
    r = requests.get(f"{services.INGRESS_URL}/healthz", headers={"Host": services.INGRESS_HOST}, timeout=5)
    r.raise_for_status()
    return r.json()


def terminating() -> list[str]:
    out = node.kubectl("get", "namespaces,pods,orderservices", "-A", "-o",
                       "jsonpath={range .items[?(@.metadata.deletionTimestamp)]}{.kind}/{.metadata.name} {end}",
                       check=False).stdout
    return out.split()


@pytest.fixture
def make_up_releases(stack):
    """Put `make up`'s releases back afterwards if they were there."""
    had = services.orderservice() is not None
    yield
    if had:
        services.ProductImage().start()
        services.OperatorRelease().start()
        services.Instance().start()


def test_skaffold_run_then_dev_with_a_source_change(stack, make_up_releases, admin_mysql):
    # The instance's namespace, admin Secret and Kafka names, as `make up` (and the README) make them before skaffold.
    services.prepare_namespace()

    # skaffold run: build, hand to the node, both releases, status check.
    out = skaffold("run", "-p", "local", "--status-check=true")
    # skaffold.yaml's deploy hook waited for the OrderService's Ready before the status check: it is
    # Ready now, with no further wait.
    assert "condition met" in out.stdout + out.stderr, (out.stdout + out.stderr)[-3000:]
    assert services.Instance().ready()
    image = services.orderservice()["spec"]["api"]["image"]
    assert image.startswith("simplecqrs:") and len(image.split(":")[1]) == 64, image  # skaffold's image-ID tag
    assert services.smoke_order()

    # skaffold dev: a source change gives a new image, a rollout and the changed behaviour.
    token = uuid.uuid4().hex[:8]
    log = open(core.LOGS / "skaffold-dev.log", "w")  # noqa: SIM115 - closed below
    # --trigger=polling: no file event reached skaffold's default (fsnotify) watcher on this machine
    dev = subprocess.Popen([str(core.BIN / "skaffold"), "dev", "-p", "local", "--status-check=true",
                            "--trigger=polling"], cwd=core.ROOT, env=skaffold_env(), stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "Watching for changes" in (core.LOGS / "skaffold-dev.log").read_text(), 600,
                 "skaffold dev deployed and watching")
        assert HEALTH.read_text().count(ORIGINAL) == 1
        HEALTH.write_text(HEALTH.read_text().replace(
            ORIGINAL, f'    return jsonify({{"status": "ok", "build": "{token}"}})\n'))
        wait_for(lambda: healthz().get("build") == token, 600, "the changed /healthz served through the Ingress")
    finally:
        HEALTH.write_text(HEALTH.read_text().replace(
            f'    return jsonify({{"status": "ok", "build": "{token}"}})\n', ORIGINAL))
        os.killpg(dev.pid, signal.SIGINT)  # Ctrl-C: skaffold cleans up (uninstalls the releases)
        try:
            dev.wait(300)
        finally:
            log.close()
    output = (core.LOGS / "skaffold-dev.log").read_text()
    assert dev.returncode == 0, output[-3000:]
    assert services.orderservice() is None
    wait_for(lambda: not terminating(), 120, "nothing left Terminating after skaffold dev")
