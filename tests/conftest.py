"""Session fixtures on the real local stack (MySQL and MariaDB, Kafka, Cassandra, kube-apiserver).

`make test` starts the stack before pytest; run alone, `pytest tests/x.py`
starts whatever is not running (and leaves it running).  Every test run gets
its own names, so runs never see each other's data:

    MySQL database + app user   simplecqrs_t<id>
    Kafka topics + group        OnNewOrder-t<id>, OnNewOrder-t<id>.DLQ
    Cassandra keyspace          simplecqrs_t<id>
    Kubernetes namespace        simplecqrs-t<id>

The delivery tests (test_image, test_charts, test_manifests, test_skaffold) share the tool and
control-plane fixtures at the end: helm, the CRDs served, a namespace of this run for server dry-runs.
"""
from __future__ import annotations

import os
import secrets
import shutil
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from support import CRD_FILES, FIELD_MANAGER, HELM, REF, REF_CRDS, docs, helm  # noqa: E402

from app.config import MySQLSettings, Settings  # noqa: E402
from scripts.stack import gotools, instance, paths, writestore  # noqa: E402
from scripts.stack.instance import (  # noqa: E402,F401 - tests import these helpers from here
    Proc,
    deprovision,
    make_settings,
    provision,
    settings_env,
    start_api,
    start_consumer,
    wait_for,
)
from scripts.stack.node import kubectl  # noqa: E402

RUN_ID = os.environ.get("SIMPLECQRS_TEST_RUN_ID") or secrets.token_hex(3)


def pytest_collection_modifyitems(config, items):
    """Soak tests (marker `soak`: the same fault again and again) run only when asked for by
    `-m soak` (`make test-soak`); `make test` and `make test-faults` leave them out."""
    if "soak" in (config.option.markexpr or ""):
        return
    keep = [i for i in items if i.get_closest_marker("soak") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("soak")])
        items[:] = keep


def pytest_generate_tests(metafunc):
    """Tests marked `both_write_stores` run once per server: Oracle MySQL and MariaDB (module
    scope, so pytest keeps the file order; their module takes `on_each_write_store()`)."""
    if "write_store" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_write_stores"):
        metafunc.parametrize("write_store", [writestore.chosen(), writestore.other()], indirect=True, scope="module")


@pytest.fixture(autouse=True)
def nothing_left_behind(request):
    """After every test, whatever its outcome: the processes it started are stopped, and the
    stores it stopped are running again.  Either left over is an error of that test."""
    stack = request.getfixturevalue("stack") if "stack" in request.fixturenames else None
    first = len(Proc.started)
    yield
    problems = []
    leaked = [p for p in Proc.started[first:] if p.alive() and not p.outlives_test]
    for p in leaked:
        p.stop()
    if leaked:
        problems.append(f"left {len(leaked)} process(es) running (now stopped): {[p.name for p in leaked]}")
    for c in (stack or {}).values():
        if not c.running():
            c.up()
            problems.append(f"left {c.name} stopped (now started again)")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    """No test process survives the run (fixtures of every scope have been torn down by now)."""
    alive = [p for p in Proc.started if p.alive()]
    for p in alive:
        p.stop()
    if alive:
        print(f"\nERROR processes still running at the end of the run (stopped now): {[p.name for p in alive]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def stack():
    """The infrastructure, started if needed."""
    from scripts.stack.__main__ import bring_up, infrastructure

    comps = infrastructure()
    if not all(c.running() for c in comps):
        bring_up(comps)
    return {c.name: c for c in comps}


@pytest.fixture(scope="session")
def run_id() -> str:
    return RUN_ID


@pytest.fixture(scope="module")
def write_store(request, stack):
    """The write store's component (name, port, root client): the one the stack chose
    (SIMPLECQRS_WRITE_STORE, MySQL by default), or each in turn (`both_write_stores`)."""
    return stack[getattr(request, "param", writestore.chosen())]


@pytest.fixture(scope="session")
def admin_mysql(stack) -> MySQLSettings:
    return instance.admin_mysql()


def _instance(admin: MySQLSettings, suffix: str):
    s = make_settings(admin, suffix)
    provision(s)
    yield s
    if os.environ.get("SIMPLECQRS_KEEP_TEST_DATA") != "1":
        deprovision(s)


def on_each_write_store():
    """Module fixtures that replace `admin_mysql`, `settings` and `api` in a module marked
    `both_write_stores`: `admin_mysql = on_each_write_store()` at its top level names them all
    (pytest registers fixtures by their `name`); `fresh_settings` follows `admin_mysql`."""
    @pytest.fixture(scope="module", name="admin_mysql")
    def admin_on(write_store) -> MySQLSettings:
        return instance.admin_mysql(port=write_store.port)

    @pytest.fixture(scope="module", name="settings")
    def settings_on(admin_mysql, write_store):
        yield from _instance(admin_mysql, f"{RUN_ID}{write_store.name[:2]}")

    @pytest.fixture(scope="module", name="api")
    def api_on(settings, write_store):
        p, url = start_api(settings, f"api-{write_store.name}")
        yield url
        p.stop()

    return admin_on, settings_on, api_on


@pytest.fixture(scope="session")
def settings(admin_mysql) -> Settings:
    """A provisioned, isolated instance for this test run (removed at the end)."""
    yield from _instance(admin_mysql, RUN_ID)


@pytest.fixture
def fresh_settings(admin_mysql, request):
    """An instance of its own for one test (for tests that need an empty topic or model)."""
    s = make_settings(admin_mysql, f"{RUN_ID}{uuid.uuid4().hex[:4]}")
    provision(s)
    yield s
    deprovision(s)


@pytest.fixture(scope="session")
def api(settings):
    """One API (command + query routes, outbox relay inside) for the session's instance."""
    p, url = start_api(settings, "api-session")
    yield url
    p.stop()


@pytest.fixture(scope="session")
def consumers(settings):
    procs = [start_consumer(settings, f"consumer-session-{i}") for i in (1, 2)]
    yield procs
    for p in procs:
        p.stop()


# ================================================================ delivery: the tools and the control plane
@pytest.fixture(scope="session")
def helm_bin():
    if not HELM.exists():
        paths.ensure_dirs()
        paths.link_tool(gotools.build(next(t for t in gotools.TOOLS if t.name == "helm")), "helm")
    assert gotools.HELM_VERSION in helm("version", "--short").stdout
    return HELM


@pytest.fixture(scope="session")
def apiserver(stack):
    assert shutil.which("kubectl"), "kubectl must be on PATH"
    kubectl("version")
    return stack


@pytest.fixture(scope="session")
def crds(apiserver):
    """The project's CRDs and the ServiceMonitor CRD, served (Strimzi's are, by the stack's Strimzi).

    Server-side apply: idempotent, and large CRDs are too big for client-side apply's
    last-applied annotation.  Never deleted (shared)."""
    files = [*CRD_FILES, *(REF / f for f in REF_CRDS)]
    missing = [str(f) for f in files if not f.exists()]
    assert not missing, f"missing CRD files: {missing}"
    names = []
    for f in files:
        kubectl("apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}", "-f", f)
        names += [d["metadata"]["name"] for d in docs(f.read_text()) if d.get("kind") == "CustomResourceDefinition"]
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names))
    return names


@pytest.fixture(scope="session")
def cluster_scoped(apiserver) -> set[str]:
    out = kubectl("api-resources", "--namespaced=false", "-o", "wide", "--no-headers").stdout
    kinds = set()
    for line in out.splitlines():
        cols = line.split()
        # NAME [SHORTNAMES] APIVERSION NAMESPACED KIND VERBS...
        i = cols.index("false")
        kinds.add(cols[i + 1])
    return kinds


@pytest.fixture(scope="session")
def namespace(apiserver, run_id):
    """The delivery tests' namespace for server dry-runs (tests/test_cluster.py has its own `namespace`)."""
    ns = f"simplecqrs-t{run_id}-delivery"
    kubectl("create", "namespace", ns)
    yield ns
    # The real install (test_generated_secret_...) leaves StatefulSet volume claims, whose
    # kubernetes.io/pvc-protection finalizer stays while a pod uses them: drop it on this
    # namespace's claims, so the namespace goes without waiting for those pods.
    kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)

    def claims_released() -> bool:
        claims = kubectl("-n", ns, "get", "pvc", "-o", "name", check=False).stdout.split()
        for claim in claims:
            kubectl("-n", ns, "patch", claim, "--type", "merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
        return not claims

    try:
        wait_for(claims_released, 30, f"the claims of {ns} released", interval=0.5)
    except AssertionError:
        pass  # best effort: the namespace goes later
