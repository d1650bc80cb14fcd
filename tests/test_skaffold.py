"""skaffold.yaml (issue 6), then skaffold on the local node.

The file: checked against skaffold's schema and the repository; the kind and minikube profiles'
effective configuration (`skaffold diagnose`) and their render, sent to the apiserver with
`kubectl apply --dry-run=server --validate=strict` (tests/support.py, the CRDs from tests/conftest.py).

On the local node, as a developer runs it: `skaffold run -p local`, then `skaffold dev -p local`
for a bounded time with a source change in between (skaffold.yaml's profile `local`: the stack's
dockerd builds, scripts/skaffold_build.py hands the image to the node's containerd).

The profile deploys the same two releases as `make up` (simplecqrs-operator in simplecqrs-system,
simplecqrs in simplecqrs), so if `make up`'s instance is there, skaffold takes it over and its
cleanup removes it; the test then puts `make up`'s releases back.  Its source change (one line of
/healthz) is undone whatever happens.
"""
from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import uuid
from pathlib import Path

import conftest
import pytest
import requests
import yaml
from support import APP_CHART, REF, ROOT, SKAFFOLD, assert_restricted, docs, dry_run, pod_specs, run, tool_env

from scripts.stack import gotools, images, node, paths, services

# kubectl and HTTP polls: once a second is plenty (conftest's default suits local processes)
wait_for = functools.partial(conftest.wait_for, interval=2.0)

HEALTH = paths.ROOT / "app" / "api" / "health.py"
ORIGINAL = '    return jsonify({"status": "ok"})\n'


@pytest.fixture(scope="session")
def skaffold_bin():
    """skaffold built from the Go module proxy (scripts/gotools/skaffold; ~4 minutes once, then cached per user)."""
    tool = next((t for t in gotools.TOOLS if t.name == "skaffold"), None)
    if tool is None:
        pytest.skip("skaffold is not in scripts/stack/gotools.py")
    gotools.ensure("skaffold")  # built if missing, linked as .local/bin/skaffold
    assert run([SKAFFOLD, "version"], env=tool_env()).stdout.strip() == tool.version
    return SKAFFOLD


# ================================================================ skaffold.yaml, rendered
SKAFFOLD_YAML = ROOT / "skaffold.yaml"
PROFILES = ["kind", "minikube"]


@pytest.fixture(scope="module")
def skaffold_config() -> dict:
    return yaml.safe_load(SKAFFOLD_YAML.read_text())


@pytest.mark.timeout(900)
def test_skaffold_yaml_validates_against_the_schema(skaffold_config):
    import jsonschema

    schema = json.loads((REF / "skaffold-schema-v4beta14.json").read_text())
    assert skaffold_config["apiVersion"] == "skaffold/v4beta14"
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(skaffold_config))
    assert error is None, f"{list(error.absolute_path)}: {error.message[:500]}"


@pytest.mark.timeout(900)
def test_skaffold_yaml_names_existing_paths_and_profiles(skaffold_config):
    for art in skaffold_config["build"]["artifacts"]:
        context = ROOT / art.get("context", ".")
        assert context.is_dir()
        assert (context / art["docker"]["dockerfile"]).is_file()
    images = {a["image"] for a in skaffold_config["build"]["artifacts"]}
    releases = skaffold_config["deploy"]["helm"]["releases"]
    # The instance first: skaffold's cleanup uninstalls in list order, and the operator must outlive
    # its OrderService (the finalizer); dependsOn keeps the operator first on install.
    assert [r["chartPath"] for r in releases] == ["charts/simplecqrs", "charts/simplecqrs-operator"]
    assert releases[0]["dependsOn"] == ["simplecqrs-operator"]
    for r in releases:
        assert (ROOT / r["chartPath"] / "Chart.yaml").is_file()
        for f in r.get("valuesFiles", []):
            assert (ROOT / f).is_file(), f
        for tmpl in r.get("setValueTemplates", {}).values():
            for img in re.findall(r"IMAGE_\w+?_(\w+)}}", tmpl):
                assert img in images, tmpl
    assert [p["name"] for p in skaffold_config["profiles"]] == [*PROFILES, "local"]  # local: the last test of this file
    (fwd,) = skaffold_config["portForward"]
    # The API Service of the OrderService values-dev.yaml names.
    dev = yaml.safe_load((APP_CHART / "values-dev.yaml").read_text())
    assert fwd["resourceName"] == f"{dev['orderService']['name']}-api" and fwd["port"] == 80


def render_env(tmp_path: Path) -> dict:
    cfg = tmp_path / "skaffold-global.yaml"
    cfg.write_text("global:\n  collect-metrics: false\n  update-check: false\n  survey:\n    disable-prompt: true\n")
    return dict(tool_env(), SKAFFOLD_CONFIG=str(cfg), SKAFFOLD_UPDATE_CHECK="false")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("profile", PROFILES)
def test_skaffold_diagnose(skaffold_bin, tmp_path, profile):
    """The effective configuration of the profile.  (Full `diagnose` also inspects the base
    image's ONBUILD triggers from a registry or a Docker daemon; neither exists here.)"""
    env = render_env(tmp_path)
    proc = run([skaffold_bin, "diagnose", "-p", profile, "--yaml-only", "-c", env["SKAFFOLD_CONFIG"]], env=env)
    effective = yaml.safe_load(proc.stdout)
    assert effective["build"]["local"]["push"] is False, "kind/minikube: never push to a registry"
    assert [r["name"] for r in effective["deploy"]["helm"]["releases"]] == ["simplecqrs", "simplecqrs-operator"]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("profile", PROFILES)
def test_skaffold_render_is_accepted_by_the_apiserver(skaffold_bin, crds, namespace, cluster_scoped, tmp_path,
                                                      profile):
    env = render_env(tmp_path)
    proc = run([skaffold_bin, "render", "-p", profile, "--digest-source=tag", "--offline=true"], env=env,
               timeout=300)
    objs = docs(proc.stdout)
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "OrderService", "Kafka", "KafkaNodePool", "StatefulSet"} <= kinds, kinds
    images = {c["image"] for _, pod in pod_specs(objs) for c in pod["containers"]}
    images |= {o["spec"][part]["image"] for o in objs if o["kind"] == "OrderService" for part in ("api", "consumer")}
    ours = {i for i in images if i.startswith("simplecqrs:")}
    assert len(ours) == 1 and not ours & {"simplecqrs:latest", "simplecqrs:0.1.0"}, images
    dry_run(objs, namespace, cluster_scoped)
    for where, pod in pod_specs(objs):
        assert_restricted(where, pod)



# ================================================================ skaffold on the local node
def skaffold_env() -> dict:
    return dict(os.environ, DOCKER_HOST=f"unix://{images.DOCKER_SOCK}", KUBECONFIG=str(paths.KUBECONFIG),
                PATH=f"{paths.BIN}:{os.environ['PATH']}", SKAFFOLD_UPDATE_CHECK="false",
                SKAFFOLD_INTERACTIVE="false", SKAFFOLD_COLLECT_METRICS="false")


def skaffold(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    out = subprocess.run([str(paths.BIN / "skaffold"), *args], cwd=paths.ROOT, env=skaffold_env(), capture_output=True,
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


@pytest.mark.cluster
@pytest.mark.timeout(1500)
def test_skaffold_run_then_dev_with_a_source_change(stack, skaffold_bin, make_up_releases, admin_mysql):
    # The instance's namespace, admin Secret and Kafka names, as `make up` (and the README) make them before skaffold.
    services.prepare_namespace()

    # skaffold run: build, hand to the node, both releases, status check.
    out = skaffold("run", "-p", "local", "--status-check=true")
    # skaffold.yaml's deploy hook waited for the OrderService's Ready before the status check.  When an
    # earlier test left `make up`'s instance in place, skaffold upgrades it, and its Ready condition can be
    # the old one's for a moment, before the operator rolls the pods to skaffold's image: the rollout is
    # waited for (bounded), not assumed.
    assert "condition met" in out.stdout + out.stderr, (out.stdout + out.stderr)[-3000:]
    wait_for(services.Instance().ready, 300, "the OrderService rolled out to skaffold's image")
    image = services.orderservice()["spec"]["api"]["image"]
    assert image.startswith("simplecqrs:") and len(image.split(":")[1]) == 64, image  # skaffold's image-ID tag
    assert services.smoke_order()

    # skaffold dev: a source change gives a new image, a rollout and the changed behaviour.
    token = uuid.uuid4().hex[:8]
    log = open(paths.LOGS / "skaffold-dev.log", "w")  # noqa: SIM115 - closed below
    # --trigger=polling: no file event reached skaffold's default (fsnotify) watcher on this machine
    dev = subprocess.Popen([str(paths.BIN / "skaffold"), "dev", "-p", "local", "--status-check=true",
                            "--trigger=polling"], cwd=paths.ROOT, env=skaffold_env(), stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "Watching for changes" in (paths.LOGS / "skaffold-dev.log").read_text(), 600,
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
    output = (paths.LOGS / "skaffold-dev.log").read_text()
    assert dev.returncode == 0, output[-3000:]
    assert services.orderservice() is None
    wait_for(lambda: not terminating(), 120, "nothing left Terminating after skaffold dev")
