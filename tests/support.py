"""Helpers for tests on the real stack: read a topic, query MySQL, post orders; and the delivery
tests' tools (helm, kubectl's server dry-run, the charts' renders, the restricted pod checks) that
tests/test_image.py, test_charts.py, test_manifests.py and test_skaffold.py share."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import uuid
from pathlib import Path

import pymysql
import requests
import yaml
from kafka import KafkaConsumer, TopicPartition

from app.config import Settings
from scripts.stack import gotools, paths
from scripts.stack.instance import wait_for
from scripts.stack.node import kubectl

ORDER = {"description": "repellendus aut et eaque", "quantity": 6, "email": "Alexanne.Glover@augusta.biz",
         "firstName": "Alexanne", "lastName": "Glover"}


def order(**patch) -> dict:
    body = dict(ORDER, email=f"c{uuid.uuid4().hex[:10]}@example.com")
    body.update(patch)
    return body


def post(url: str, body, *, key: str | None = None, timeout: float = 15, **kw) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return requests.post(f"{url}/orders", json=body, headers=headers, timeout=timeout, **kw)


def read_topic(s: Settings, topic: str | None = None, timeout_ms: int = 5000) -> list:
    """Every record on the topic from the beginning to its current end (no consumer group)."""
    topic = topic or s.kafka.topic
    c = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_servers, enable_auto_commit=False, group_id=None)
    try:
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        out = []
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = c.poll(timeout_ms=timeout_ms)
            if not batch:
                break
            for tp, recs in batch.items():
                out.extend(recs)
                if c.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return out
    finally:
        c.close()


def events_on_topic(s: Settings) -> list[dict]:
    return [json.loads(r.value) for r in read_topic(s)]


def admin_connection(s: Settings, autocommit: bool = True) -> pymysql.connections.Connection:
    """A connection to the instance's database with the admin account."""
    return pymysql.connect(host=s.mysql.host, port=s.mysql.port, user=s.mysql.admin_user,
                           password=s.mysql.admin_password, database=s.mysql.database, autocommit=autocommit)


def mysql(s: Settings, sql: str, args=()) -> list[tuple]:
    conn = admin_connection(s)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def unpublished(s: Settings, relay: str | None = None) -> int:
    """Outbox events not yet published, as the relay of kind `relay` (default: the environment's) counts
    them: the poller marks rows published, the binlog relay saves the highest seq it published."""
    from app.config import load
    from app.writemodel.outbox import UNPUBLISHED

    return mysql(s, f"SELECT COUNT(*) FROM outbox {UNPUBLISHED[relay or load().outbox.relay]}")[0][0]


def pipeline_stages(s: Settings) -> dict:
    """Where each order is in the pipeline right now: the figures that name a stalled stage.

    write model -> outbox backlog (unpublished rows) -> topic (records at the end offsets)
    -> consumer group (lag = end - committed) -> read model (the audit's count)."""
    from kafka import KafkaAdminClient

    orders = mysql(s, "SELECT COUNT(*) FROM orders")[0][0]
    waiting = unpublished(s)
    c = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_servers, enable_auto_commit=False, group_id=None)
    admin = KafkaAdminClient(bootstrap_servers=s.kafka.bootstrap_servers)
    try:
        tps = [TopicPartition(s.kafka.topic, p) for p in c.partitions_for_topic(s.kafka.topic) or ()]
        end = c.end_offsets(tps)
        committed = admin.list_group_offsets(s.kafka.consumer_group)[s.kafka.consumer_group]  # kafka-python 3
        group = group_state(admin, s.kafka.consumer_group)
    finally:
        c.close()
        admin.close()
    lag = sum(end[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps)
    return {"orders_in_mysql": orders, "outbox_unpublished": waiting, "topic_records": sum(end.values()),
            "group_lag": lag, "group": group}


def group_state(admin, group: str) -> str:
    """The consumer group as its coordinator sees it (state, members), or why it could not say: for a
    failure's message (a group with no coordinator or no members consumes nothing)."""
    try:
        g = admin.describe_groups([group])[group]
        return f"{g.get('group_state')}, {len(g.get('members') or [])} member(s)"
    except Exception as e:  # noqa: BLE001 - what it could not say is the finding
        return f"not described: {type(e).__name__}: {e}"


def stalled_stage(stages: dict, orders_read: int) -> str:
    """The first stage that holds orders back, in pipeline order."""
    if stages["outbox_unpublished"]:
        return f"outbox relay: {stages['outbox_unpublished']} event(s) not published"
    if stages["topic_records"] < stages["orders_in_mysql"]:
        return (f"topic: {stages['topic_records']} record(s) for {stages['orders_in_mysql']} orders "
                "although the outbox is empty")
    if stages["group_lag"]:
        return f"consumer group: lag {stages['group_lag']} ({stages['group']})"
    if orders_read != stages["orders_in_mysql"]:
        return f"projection: read model has {orders_read} of {stages['orders_in_mysql']} with no lag"
    return "none: every stage caught up"


def audit_equal(s: Settings, timeout: float = 90, interval: float = 1):
    """Wait until the read model equals the write model; return the report (app/audit.py)."""
    from app.audit import audit

    last = {}

    def check():
        last["r"] = audit(s)
        return last["r"].equal

    try:
        wait_for(check, timeout, "the audit to report equal", interval=interval)
    except AssertionError:
        raise AssertionError(last["r"].summary() + "\n" + "\n".join(
            (last["r"].missing + last["r"].extra + last["r"].different)[:10])) from None
    return last["r"]


# ================================================================ delivery: the tools and the control plane
# Everything runs the real tools against the real local control plane, no mocks:
#
#   helm       .local/bin/helm (built from the Go module proxy by the stack harness)
#   kubectl    on PATH (v1.32), against the stack's kube-apiserver
#   skaffold   .local/bin/skaffold (built the same way: scripts/gotools/skaffold)
#
# What is rendered is sent to the apiserver with `kubectl apply --dry-run=server --validate=strict`
# (dry_run below), after the CRDs are installed (the `crds` fixture, tests/conftest.py).
ROOT = paths.ROOT
REF = paths.REF
HELM = paths.BIN / "helm"
SKAFFOLD = paths.BIN / "skaffold"
KUBECONFIG = paths.KUBECONFIG
K8S_VERSION = gotools.K8S_VERSION.lstrip("v")          # the local apiserver's version
FIELD_MANAGER = "simplecqrs-delivery-tests"

OPERATOR_CHART = ROOT / "charts" / "simplecqrs-operator"
APP_CHART = ROOT / "charts" / "simplecqrs"
CRD_FILES = [ROOT / "k8s" / "crd" / "orderservice.yaml"]
# Strimzi's CRDs (Kafka, KafkaNodePool, ...) are served by the stack, from the build of the Cluster
# Operator that runs (scripts/stack/strimzi.py); applying the reference copies (a later commit) here
# would replace them under the running operator.  Only the ServiceMonitor CRD comes from ../shared/ref.
REF_CRDS = ["prometheus-servicemonitor.yaml"]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
RELEASE = {OPERATOR_CHART: "simplecqrs-operator", APP_CHART: "simplecqrs"}


def run(argv: list[str], *, input: str | None = None, check: bool = True, timeout: float = 300,
        env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], input=input, capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd or ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"{shlex.join(str(a) for a in argv)} exited {proc.returncode}\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def tool_env() -> dict:
    env = dict(os.environ, KUBECONFIG=str(KUBECONFIG), PATH=f"{paths.BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    # helm keeps its caches/config per user; keep them out of the home directory's
    # repository list so a developer's own helm repos never leak into the tests.
    env.setdefault("HELM_CACHE_HOME", str(paths.LOCAL / "cache" / "helm"))
    env.setdefault("HELM_CONFIG_HOME", str(paths.LOCAL / "etc" / "helm"))
    env.setdefault("HELM_DATA_HOME", str(paths.LOCAL / "data" / "helm"))
    return env


def helm(*args, **kw) -> subprocess.CompletedProcess:
    return run([HELM, *args], env=tool_env(), **kw)


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def into_namespace(objs: list[dict], ns: str, cluster_scoped: set[str]) -> list[dict]:
    """Namespaced objects move to `ns`, this run's namespace, which exists (a dry-run creates
    nothing, so objects in a namespace the same batch would create could not be checked)."""
    out = []
    for o in objs:
        o = json.loads(json.dumps(o))
        if o["kind"] not in cluster_scoped:
            o.setdefault("metadata", {})["namespace"] = ns
        out.append(o)
    return out


def dry_run(objs: list[dict], ns: str, cluster_scoped: set[str]) -> str:
    """kubectl apply --dry-run=server with strict field validation; every object must pass."""
    assert objs, "nothing rendered"
    payload = {"apiVersion": "v1", "kind": "List", "items": into_namespace(objs, ns, cluster_scoped)}
    proc = kubectl("apply", "--dry-run=server", "--validate=strict", "--server-side", "--force-conflicts",
                   f"--field-manager={FIELD_MANAGER}", "-f", "-", input=json.dumps(payload), check=False)
    # Zero errors and zero warnings, except the one that comes from the shared CRDs'
    # history (another test applied them client-side), not from what is dry-run here.
    noise = "Warning: failed to migrate kubectl.kubernetes.io/last-applied-configuration"
    complaints = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(noise)]
    assert proc.returncode == 0 and not complaints, (
        f"server dry-run failed:\n{proc.stderr[-6000:]}\n--- applied\n{proc.stdout[-3000:]}")
    applied = proc.stdout.strip().splitlines()
    assert len(applied) == len(objs), (applied, [f"{o['kind']}/{o['metadata']['name']}" for o in objs])
    return proc.stdout


# ---------------------------------------------------------------- the charts rendered
def clean_stderr(stderr: str) -> list[str]:
    """helm's stderr, blank lines aside: a warning fails the render."""
    return [ln for ln in stderr.splitlines() if ln.strip()]


_renders: dict = {}


def render_text(chart: Path, args: list[str], namespace: str = "simplecqrs") -> str:
    key = (chart, tuple(args), namespace)
    if key not in _renders:
        proc = helm("template", RELEASE[chart], chart, "--namespace", namespace, "--kube-version", K8S_VERSION,
                    *args)
        assert not clean_stderr(proc.stderr), proc.stderr
        _renders[key] = proc.stdout
    return _renders[key]


def render(chart: Path, args: list[str], namespace: str = "simplecqrs") -> list[dict]:
    return docs(render_text(chart, args, namespace))


def chart_crds() -> list[dict]:
    """The operator chart's crds/, as helm installs them.  (Not `helm show crds`: it prints
    the files back to back without a `---` between them, merging the last and first documents.)"""
    objs = docs(render_text(OPERATOR_CHART, ["--include-crds"]))
    return [o for o in objs if o["kind"] == "CustomResourceDefinition"]


# ---------------------------------------------------------------- pods run restricted
def pod_specs(objs: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for o in objs:
        spec = None
        if o["kind"] == "Pod":
            spec = o["spec"]
        elif o["kind"] == "CronJob":
            spec = o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif o["kind"] in WORKLOAD_KINDS:
            spec = o["spec"]["template"]["spec"]
        if spec is not None:
            out.append((f"{o['kind']}/{o['metadata']['name']}", spec))
    return out


def assert_restricted(where: str, pod: dict) -> None:
    """Non-root, read-only root filesystem, no privilege escalation, no capabilities, RuntimeDefault seccomp."""
    psc = pod.get("securityContext") or {}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), where
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc, name = c.get("securityContext") or {}, f"{where} container {c['name']}"
        assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{name}: runAsNonRoot"
        assert sc.get("runAsUser", psc.get("runAsUser", 1)) != 0, f"{name}: runs as uid 0"
        assert sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem"
        assert sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation"
        assert not sc.get("privileged"), f"{name}: privileged"
        caps = sc.get("capabilities") or {}
        assert caps.get("drop") == ["ALL"] and not caps.get("add"), f"{name}: capabilities {caps}"
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        assert seccomp == "RuntimeDefault", f"{name}: seccompProfile {seccomp}"
        assert c.get("resources", {}).get("limits", {}).get("memory"), f"{name}: no memory limit"


def assert_strimzi_restricted(objs: list[dict]) -> None:
    """Strimzi creates the Kafka pods; the templates it copies into them must be restricted too."""
    for o in objs:
        if o["kind"] == "KafkaNodePool":
            t = o["spec"]["template"]
            assert t["pod"]["securityContext"]["runAsNonRoot"] is True
            assert t["pod"]["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            sc = t["kafkaContainer"]["securityContext"]
        elif o["kind"] == "Kafka":
            t = o["spec"]["entityOperator"]["template"]
            assert t["pod"]["securityContext"]["runAsNonRoot"] is True
            sc = t["topicOperatorContainer"]["securityContext"]
        else:
            continue
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
