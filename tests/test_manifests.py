"""The plain manifests (issue 6): the kustomize dev base and overlays (k8s/dev), the operator's
kustomization (k8s/), the examples, and the kind cluster configuration.

What kustomize renders is sent to the apiserver with `kubectl apply --dry-run=server
--validate=strict` (tests/support.py), after the CRDs are installed (tests/conftest.py).
"""
from __future__ import annotations

import difflib
import shutil

import pytest
import yaml
from support import (
    APP_CHART,
    ROOT,
    assert_restricted,
    assert_strimzi_restricted,
    docs,
    dry_run,
    pod_specs,
    render,
)

from scripts.stack.node import kubectl

OVERLAYS = sorted(p.parent for p in (ROOT / "k8s" / "dev" / "overlays").glob("*/kustomization.yaml"))

pytestmark = pytest.mark.timeout(900)


# ================================================================ plain manifests (kustomize)
@pytest.fixture(scope="module")
def dev_tree(tmp_path_factory):
    """k8s/dev copied with the git-ignored secret env file generated, as the README says."""
    import secrets as pysecrets

    tree = tmp_path_factory.mktemp("k8s") / "dev"
    shutil.copytree(ROOT / "k8s" / "dev", tree, ignore=shutil.ignore_patterns("*.env"))
    env = tree / "base" / "secrets" / "mysql.env"
    env.parent.mkdir(exist_ok=True)
    env.write_text(f"username=root\npassword={pysecrets.token_hex(24)}\n")
    return tree


def test_kustomize_dev_overlays_exist():
    assert [p.name for p in OVERLAYS] == ["kind", "minikube"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_kustomize_overlay_renders_objects_the_apiserver_accepts(crds, namespace, cluster_scoped, dev_tree, overlay):
    objs = docs(kubectl("kustomize", dev_tree / "overlays" / overlay.name).stdout)
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == sorted(["Namespace", "Secret", "Service", "Service", "StatefulSet", "StatefulSet",
                            "Kafka", "KafkaNodePool"]), kinds
    (pool,) = [o for o in objs if o["kind"] == "KafkaNodePool"]
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}, "KRaft: no ZooKeeper"
    (secret,) = [o for o in objs if o["kind"] == "Secret"]
    assert set(secret["data"]) == {"username", "password"}
    assert secret["metadata"]["labels"]["simplecqrs.io/credentials"] == "true", "the operator uses labelled Secrets only"
    dry_run(objs, namespace, cluster_scoped)
    for where, pod in pod_specs(objs):
        assert_restricted(where, pod)
    assert_strimzi_restricted(objs)


def test_dev_orderservice_names_the_dev_stores(crds, namespace, cluster_scoped, dev_tree):
    """k8s/dev/orderservice.yaml (applied by hand after the operator) points at the overlay's objects."""
    (osvc,) = docs((ROOT / "k8s" / "dev" / "orderservice.yaml").read_text())
    objs = docs(kubectl("kustomize", dev_tree / "overlays" / "kind").stdout)
    ns = {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"}
    assert ns == {osvc["metadata"]["namespace"]}
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    spec = osvc["spec"]
    assert ("Secret", spec["mysql"]["adminSecretRef"]["name"]) in names
    assert ("Service", spec["mysql"]["host"].split(".")[0]) in names
    assert ("Service", spec["cassandra"]["contactPoints"][0].split(".")[0]) in names
    assert ("Kafka", spec["kafka"]["strimzi"]["cluster"]) in names
    assert spec["kafka"]["bootstrapServers"].startswith(f"{spec['kafka']['strimzi']['cluster']}-kafka-bootstrap.")
    dry_run([osvc], namespace, cluster_scoped)


def test_the_real_cluster_example_is_accepted_as_written(crds, namespace, cluster_scoped):
    """k8s/examples/orderservice-cluster.yaml, the operator quick start's example for a real cluster: the
    apiserver takes it (schema and CEL rules); it verifies MySQL (a CA) and names Kafka names of its namespace."""
    (osvc,) = docs((ROOT / "k8s" / "examples" / "orderservice-cluster.yaml").read_text())
    spec, ns = osvc["spec"], osvc["metadata"]["namespace"]
    assert spec["mysql"]["tls"]["caSecretRef"]["name"] and spec["mysql"]["outboxRelay"] == "poll"
    assert spec["kafka"]["topic"].startswith(f"{ns}.") and spec["kafka"]["consumerGroup"].startswith(f"{ns}.")
    dry_run([osvc], namespace, cluster_scoped)


def test_chart_and_manifests_run_the_same_development_stores(helm_bin, dev_tree):
    """values-dev.yaml's stores and k8s/dev/base are the same servers: the same images and the same
    server arguments (the binlog relay, the default, needs the MySQL binlog flags on both paths)."""
    def containers(objs: list[dict]) -> dict[str, tuple]:
        return {c["name"]: (c["image"], c.get("args"), c.get("command"))
                for o in objs if o["kind"] == "StatefulSet" for c in o["spec"]["template"]["spec"]["containers"]}

    chart = containers(render(ROOT / "charts" / "simplecqrs", ["-f", str(ROOT / "charts/simplecqrs/values-dev.yaml")]))
    manifests = containers(docs(kubectl("kustomize", dev_tree / "overlays" / "kind").stdout))
    assert set(chart) == set(manifests) == {"mysql", "cassandra"}, (chart, manifests)
    assert chart == manifests
    assert "--binlog-row-metadata=FULL" in manifests["mysql"][1]
    # ...and the versions the local stack runs: Cassandra's, and Kafka's (neither path pins one: the
    # Strimzi release's default, which the stack's Kafka is).
    from scripts.stack import cassandra as stack_cassandra
    from scripts.stack import strimzi

    assert manifests["cassandra"][0] == f"cassandra:{stack_cassandra.VERSION}"
    kafkas = [o for o in docs(kubectl("kustomize", dev_tree / "overlays" / "kind").stdout) if o["kind"] == "Kafka"]
    kafkas += [o for o in render(ROOT / "charts" / "simplecqrs", ["-f", str(ROOT / "charts/simplecqrs/values-dev.yaml")])
               if o["kind"] == "Kafka"]
    assert len(kafkas) == 2 and all(k["spec"]["kafka"].get("version") in (None, strimzi.KAFKA_VERSION) for k in kafkas)

# ---------------------------------------------------------------- one source for the development stores
# The chart's store templates (charts/simplecqrs/templates/{mysql,cassandra,kafka}.yaml with values-dev.yaml)
# and k8s/dev/base describe the same development servers twice.  They are kept equal by the test below, not
# generated one from the other (as scripts/sync_charts.py copies the CRD and the RBAC files): those are
# verbatim copies, whereas here one side is Go templates taking names, labels, images and resources from
# values and helpers, and the other is plain YAML with the comments a kustomize user reads.  A generator
# would have to template or de-template, losing those comments, and would be more code than what it
# replaces.  The test renders both with the real tools (helm template, kubectl kustomize; no cluster) and
# compares every store object whole, after taking out only what belongs to one form: the release's object
# names and labels, Helm's own annotations, and the generated password.  A setting added, changed or
# dropped on one side only (image, arguments, env, ports, probes, resources, security contexts, volumes,
# Kafka's configuration...) fails it, whichever field it is.  (The chart's store NetworkPolicies
# admit the operator's release, which plain manifests have no name for: they are the chart's only.)
STORE_KINDS = {"Secret", "Service", "StatefulSet", "Kafka", "KafkaNodePool"}
RELEASE_LABELS = {"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}


def store_objects(objs: list[dict]) -> dict[tuple[str, str], dict]:
    """The development stores' objects by (kind, app.kubernetes.io/name)."""
    out = {}
    for o in objs:
        app = o["metadata"].get("labels", {}).get("app.kubernetes.io/name")
        if o["kind"] in STORE_KINDS and app in ("mysql", "cassandra", "kafka"):
            assert (o["kind"], app) not in out, f"two {o['kind']} objects for {app}"
            out[(o["kind"], app)] = o
    return out


def comparable(obj: dict, renames: dict[str, str]) -> dict:
    """`obj` without what belongs to its form: the release's labels and Helm's keys (helm.sh/...) wherever
    they are (metadata, selectors, pod templates), its namespace, a generated password; every string that
    is one of the chart's object names is the manifests' name for the same object."""
    def walk(v):
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items() if k not in RELEASE_LABELS and not k.startswith("helm.sh/")}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return renames.get(v, v) if isinstance(v, str) else v

    out = walk(obj)
    out["metadata"].pop("namespace", None)
    if out["kind"] == "Secret":
        out["data"] = {k: "<generated>" if k == "password" else v for k, v in out["data"].items()}
    return out


def test_chart_and_manifests_store_settings_agree(helm_bin, dev_tree):
    """values-dev.yaml's stores and k8s/dev/base, object by object, apart from what only names the release."""
    chart = store_objects(render(APP_CHART, ["-f", str(APP_CHART / "values-dev.yaml")]))
    manifests = store_objects(docs(kubectl("kustomize", dev_tree / "base").stdout))
    assert sorted(chart) == sorted(manifests), (sorted(chart), sorted(manifests))
    renames: dict[str, str] = {}
    for key, o in chart.items():
        ours, theirs = o["metadata"]["name"], manifests[key]["metadata"]["name"]
        assert renames.setdefault(ours, theirs) == theirs, f"the chart's {ours} is two objects of the manifests"
    for key in sorted(chart):
        a, b = comparable(chart[key], renames), comparable(manifests[key], {})
        diff = "\n".join(difflib.unified_diff(yaml.safe_dump(a).splitlines(), yaml.safe_dump(b).splitlines(),
                                               "chart (values-dev.yaml)", "k8s/dev/base", lineterm=""))
        assert a == b, f"{key[0]} of {key[1]}: the chart and the manifests differ\n{diff}"


def test_kind_cluster_config_publishes_the_ingress_ports():
    cfg = yaml.safe_load((ROOT / "k8s" / "dev" / "kind-cluster.yaml").read_text())
    assert cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4" and cfg["kind"] == "Cluster"
    (node,) = cfg["nodes"]
    assert {(m["containerPort"], m["hostPort"]) for m in node["extraPortMappings"]} == {(80, 80), (443, 443)}
    assert "ingress-ready=true" in node["kubeadmConfigPatches"][0]


def test_kustomize_refuses_to_build_without_the_generated_secret(tmp_path):
    tree = tmp_path / "dev"
    shutil.copytree(ROOT / "k8s" / "dev", tree, ignore=shutil.ignore_patterns("*.env"))
    proc = kubectl("kustomize", tree / "overlays" / "kind", check=False)
    assert proc.returncode != 0 and "mysql.env" in proc.stderr, proc.stderr


def test_kustomize_operator_install(crds, namespace, cluster_scoped):
    """k8s/kustomization.yaml: the operator for users without Helm, from the files the chart links to."""
    kz = yaml.safe_load((ROOT / "k8s" / "kustomization.yaml").read_text())
    assert kz["resources"] == ["crd/orderservice.yaml", "operator/rbac.yaml", "operator/rbac-tenants.yaml",
                               "operator/deployment.yaml"]
    objs = docs(kubectl("kustomize", ROOT / "k8s").stdout)
    assert {o["kind"] for o in objs} >= {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
                                         "ServiceAccount", "Deployment", "Role", "RoleBinding"}
    dry_run(objs, namespace, cluster_scoped)
    for where, pod in pod_specs(objs):
        assert_restricted(where, pod)

