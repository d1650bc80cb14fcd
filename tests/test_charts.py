"""The Helm charts (issue 6): charts/simplecqrs-operator and charts/simplecqrs.

Both charts are rendered (helm template) with every documented values combination and sent to
the apiserver with `kubectl apply --dry-run=server --validate=strict`, after the project's CRDs,
Strimzi's Kafka/KafkaNodePool CRDs and the Prometheus Operator's ServiceMonitor CRD (from
../shared/ref/) are installed.  The CRDs are cluster-scoped and other tests use them too: they are
applied idempotently (server-side apply) and never deleted.  Namespaced objects are moved into one
namespace of this run, deleted at the end (the fixtures are in tests/conftest.py, the helpers in
tests/support.py).  There is no kubelet: pods never run, so what the suite cannot prove here
(images pull, stores start, the API answers through the Ingress) is listed in the README.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from support import (
    APP_CHART,
    CRD_FILES,
    K8S_VERSION,
    OPERATOR_CHART,
    RELEASE,
    ROOT,
    assert_restricted,
    assert_strimzi_restricted,
    chart_crds,
    docs,
    dry_run,
    helm,
    pod_specs,
    render,
)

from scripts.stack.node import kubectl

pytestmark = pytest.mark.timeout(900)


# ================================================================ Helm charts
def chart_combos(chart: Path) -> list[tuple[str, list[str]]]:
    """Default values, every values-*.yaml beside the chart, every ci/*-values.yaml."""
    combos = [("default", [])]
    combos += [(f.name, ["-f", str(f)]) for f in sorted(chart.glob("values-*.yaml"))]
    combos += [(f"ci/{f.name}", ["-f", str(f)]) for f in sorted((chart / "ci").glob("*-values.yaml"))]
    return combos


COMBOS = [pytest.param(chart, args, id=f"{chart.name}:{name}")
          for chart in (OPERATOR_CHART, APP_CHART) for name, args in chart_combos(chart)]


@pytest.mark.parametrize("chart", [OPERATOR_CHART, APP_CHART], ids=lambda c: c.name)
def test_helm_lint_every_values_combination(helm_bin, crds, chart):
    """`helm install --dry-run=client` maps kinds through discovery: the CRDs must be served."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    for name, args in chart_combos(chart):
        proc = helm("lint", "--strict", "--kube-version", K8S_VERSION, chart, *args, check=False)
        assert proc.returncode == 0 and "0 chart(s) failed" in proc.stdout, f"{name}:\n{proc.stdout}\n{proc.stderr}"
        # NOTES.txt renders too (helm template does not show it), with every value filled in.  Helm checks
        # that the release's objects are not another release's: the operator's cluster-scoped RBAC may
        # belong to a real simplecqrs-operator release (tests/test_cluster.py, `make up`), so its dry run
        # is an upgrade of that release; the instance's goes to a namespace nothing uses.
        ns = "simplecqrs-system" if chart == OPERATOR_CHART else "delivery-dry-run"
        out = helm("upgrade", "--install", RELEASE[chart], chart, "--namespace", ns, "--dry-run=client",
                   *args).stdout
        assert "NOTES:" in out and "<no value>" not in out, f"{name}:\n{out[-2000:]}"
    for required in ("values.schema.json", "templates/_helpers.tpl", "templates/NOTES.txt", "values.yaml"):
        assert (chart / required).is_file(), required
    helpers = (chart / "templates" / "_helpers.tpl").read_text()
    for helper in ("name", "fullname", "chart", "labels", "selectorLabels"):
        assert f'define "{chart.name}.{helper}"' in helpers, helper


@pytest.mark.parametrize("chart", [OPERATOR_CHART, APP_CHART], ids=lambda c: c.name)
def test_chart_kube_version_accepts_the_local_apiserver(helm_bin, chart):
    # helm checks Chart.yaml's kubeVersion against --kube-version (here: the real server's).
    helm("template", "x", chart, "--kube-version", K8S_VERSION)
    too_old = helm("template", "x", chart, "--kube-version", "1.24.0", check=False)
    assert too_old.returncode != 0 and "kubeVersion" in too_old.stderr, too_old.stderr


@pytest.mark.parametrize("chart,args", COMBOS)
def test_chart_renders_objects_the_apiserver_accepts(helm_bin, crds, namespace, cluster_scoped, chart, args):
    objs = render(chart, args, namespace)
    dry_run(objs, namespace, cluster_scoped)
    if chart == OPERATOR_CHART:
        # CRDs ship in crds/: helm installs them before the templates; dry-run them too.
        dry_run(chart_crds(), namespace, cluster_scoped)



@pytest.mark.parametrize("chart,args", COMBOS)
def test_rendered_workloads_run_restricted(helm_bin, chart, args):
    objs = render(chart, args)
    pods = pod_specs(objs)
    assert pods, "every combination renders at least one workload or test pod"
    for where, pod in pods:
        assert_restricted(where, pod)
    assert_strimzi_restricted(objs)


@pytest.mark.parametrize("chart,setting,message", [
    (APP_CHART, "orderService.api.replicas=-1", "at '/orderService/api/replicas': minimum: got -1, want 0"),
    (APP_CHART, "orderService.consumer.replicas=-3", "at '/orderService/consumer/replicas': minimum: got -3, want 0"),
    (APP_CHART, "orderService.deletionPolicy=Keep", "at '/orderService/deletionPolicy': value must be one of"),
    (APP_CHART, "orderService.replica=2", "additional properties 'replica' not allowed"),
    (APP_CHART, "kafka.partitions=0", "at '/kafka/partitions': minimum: got 0, want 1"),
    (OPERATOR_CHART, "replicaCount=-1", "at '/replicaCount': minimum: got -1, want 0"),
    (OPERATOR_CHART, "rbac.scope=everywhere", "at '/rbac/scope': value must be one of 'cluster', 'namespace'"),
    (OPERATOR_CHART, "securityContext.readOnlyRootFilesystem=false",
     "at '/securityContext/readOnlyRootFilesystem': value must be true"),
], ids=lambda v: v if isinstance(v, str) and "=" in v else None)
def test_values_schema_rejects_wrong_values_clearly(helm_bin, chart, setting, message):
    proc = helm("template", "x", chart, "--set", setting, check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr


def test_app_chart_schema_requires_store_addresses_without_bundled_stores(helm_bin):
    proc = helm("template", "x", APP_CHART, "--set", "mysql.host=", check=False)
    assert proc.returncode != 0 and "/mysql/host" in proc.stderr, proc.stderr
    helm("template", "x", APP_CHART, "--set", "mysql.host=", "--set", "mysql.deploy.enabled=true")


# ---------------------------------------------------------------- one source for CRDs and RBAC
def crd_spec_fields(schema: dict, prefix: str = "") -> set[str]:
    """The dotted paths of an OrderService spec a user sets: leaves, lists and maps (a list of
    objects, e.g. parentRefs or tolerations, counts as one field)."""
    props = schema.get("properties") if schema.get("type") == "object" else None
    if not props:
        return {prefix}
    return {p for k, v in props.items() for p in crd_spec_fields(v, f"{prefix}.{k}" if prefix else k)}


def set_fields(value, prefix: str = "") -> set[str]:
    """The dotted paths (and every parent path) present in a rendered spec."""
    out = {prefix} if prefix else set()
    if isinstance(value, dict):
        for k, v in value.items():
            out |= set_fields(v, f"{prefix}.{k}" if prefix else k)
    return out


def test_app_chart_exposes_every_crd_field(helm_bin):
    """Whatever a user can set on an OrderService, some value of the chart sets: over the chart's
    documented combinations (values*.yaml, ci/), the rendered OrderService uses every spec field."""
    (crd,) = docs(CRD_FILES[0].read_text())
    fields = crd_spec_fields(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])
    seen: set[str] = set()
    for _name, args in chart_combos(APP_CHART):
        for obj in render(APP_CHART, args):
            if obj["kind"] == "OrderService":
                seen |= set_fields(obj["spec"])
    assert not sorted(fields - seen), f"CRD fields no chart value sets: {sorted(fields - seen)}"


def test_operator_chart_crds_are_the_k8s_crds(helm_bin):
    """crds/ and files/ hold copies of k8s/crd/ and k8s/operator/ (their one source), kept by
    scripts/sync_charts.py; no symlinks anywhere in the charts."""
    from scripts import sync_charts

    assert not sync_charts.stale(), f"stale chart copies {sync_charts.stale()}: run .venv/bin/python -m scripts.sync_charts"
    links = [p for chart in (OPERATOR_CHART, APP_CHART) for p in chart.rglob("*") if p.is_symlink()]
    assert not links, f"symlinks in the charts: {links}"
    assert sorted(p.name for p in (OPERATOR_CHART / "crds").iterdir()) == sorted(p.name for p in CRD_FILES)
    shown = chart_crds()
    expected = [d for f in CRD_FILES for d in docs(f.read_text())]
    assert sorted(shown, key=lambda d: d["metadata"]["name"]) == sorted(expected, key=lambda d: d["metadata"]["name"])


def test_operator_chart_packages_the_crd_content(helm_bin, tmp_path):
    helm("package", OPERATOR_CHART, "--destination", tmp_path)
    (pkg,) = tmp_path.glob("simplecqrs-operator-*.tgz")
    import tarfile

    with tarfile.open(pkg) as tar:
        member = tar.getmember("simplecqrs-operator/crds/orderservice.yaml")
        assert member.isfile(), "the package must hold the CRD's content, not a link"
        assert tar.extractfile(member).read().decode() == CRD_FILES[0].read_text()


def rules_of(path: Path, kind: str) -> list[dict]:
    (role,) = [d for d in docs(path.read_text()) if d["kind"] == kind]
    return role["rules"]


@pytest.mark.parametrize("scope,kind,source", [
    ("cluster", "ClusterRole", "rbac.yaml"),
    ("namespace", "Role", "rbac-namespaced.yaml"),
])
def test_operator_chart_rbac_is_k8s_operator_rbac(helm_bin, scope, kind, source):
    objs = render(OPERATOR_CHART, ["--set", f"rbac.scope={scope}"], "ops")
    tenant_roles = [o for o in objs if o["metadata"]["name"] in ("simplecqrs-edit", "simplecqrs-view")]
    assert tenant_roles == docs((ROOT / "k8s" / "operator" / "rbac-tenants.yaml").read_text())
    assert not [o for o in render(OPERATOR_CHART, ["--set", "rbac.tenantRoles=false"], "ops")
                if o["metadata"]["name"] in ("simplecqrs-edit", "simplecqrs-view")]
    roles = [o for o in objs if o["kind"] in ("Role", "ClusterRole") and o not in tenant_roles]
    # cluster scope: the ClusterRole, plus a Role for the leader-election Lease in the release namespace
    assert [r["kind"] for r in roles] == ([kind, "Role"] if scope == "cluster" else [kind])
    assert roles[0]["rules"] == rules_of(ROOT / "k8s" / "operator" / source, kind)   # (the release's Lease name
    # is the file's default, simplecqrs-operator, for a release of that name: the rules are the file's)
    bindings = [o for o in objs if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    (sa,) = [o for o in objs if o["kind"] == "ServiceAccount"]
    assert [(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bindings] == [
        (r["kind"], r["metadata"]["name"]) for r in roles]
    for b in bindings:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "ops"}]
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SIMPLECQRS_OPERATOR_LEASE"] == dep["metadata"]["name"]
    lease_rules = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                   {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                    "resourceNames": [env["SIMPLECQRS_OPERATOR_LEASE"]], "verbs": ["get", "update"]}]
    if scope == "namespace":
        assert env["WATCH_NAMESPACE"] == "ops" and roles[0]["metadata"]["namespace"] == "ops"
        assert all(rule in roles[0]["rules"] for rule in lease_rules)
    else:
        assert env["WATCH_NAMESPACE"] == ""
        assert (roles[1]["metadata"]["namespace"], roles[1]["rules"]) == ("ops", lease_rules)
    # Another Lease name: the rule names it.
    renamed = render(OPERATOR_CHART, ["--set", f"rbac.scope={scope}", "--set", "leaderElection.lease=other"], "ops")
    assert [r["resourceNames"] for o in renamed if o["kind"] == "Role" for r in o["rules"]
            if "leases" in r["resources"] and r.get("resourceNames")] == [["other"]]


def test_operator_chart_deployment_matches_k8s_operator_deployment(helm_bin):
    """The chart's Deployment runs the operator as k8s/operator/deployment.yaml does."""
    (ours,) = [o for o in render(OPERATOR_CHART, []) if o["kind"] == "Deployment"]
    (theirs,) = [d for d in docs((ROOT / "k8s" / "operator" / "deployment.yaml").read_text())
                 if d["kind"] == "Deployment"]
    a, b = (d["spec"]["template"]["spec"]["containers"][0] for d in (ours, theirs))
    assert a["command"] == b["command"]
    assert {e["name"] for e in a["env"]} >= {e["name"] for e in b["env"]}
    ports = [[(p["name"], p["containerPort"]) for p in c["ports"]] for c in (a, b)]
    assert ports[0] == ports[1]
    assert a["livenessProbe"]["httpGet"] == b["livenessProbe"]["httpGet"]
    pa, pb = (d["spec"]["template"]["spec"]["securityContext"] for d in (ours, theirs))
    assert pa["runAsUser"] == pb["runAsUser"] and pa["runAsNonRoot"] and pb["runAsNonRoot"]


# ---------------------------------------------------------------- the app chart and the operator's children
def operator_children(orderservice: dict, namespace: str) -> list[dict]:
    """What the operator makes of the rendered OrderService (k8s/operator/simplecqrs_operator/children.py)."""
    sys.path.insert(0, str(ROOT / "k8s" / "operator"))
    from simplecqrs_operator import children
    from simplecqrs_operator.resource import OrderService

    body = json.loads(json.dumps(orderservice))
    body["metadata"].update(namespace=namespace,
                            uid=body["metadata"].get("uid") or "00000000-0000-0000-0000-000000000000")
    wanted, _ = children.workloads(OrderService.from_body(body), "0" * 16)
    return wanted


def defaulted(obj: dict, namespace: str) -> dict:
    """The object as the apiserver would store it (CRD defaults applied): a server dry-run's answer."""
    o = json.loads(json.dumps(obj))
    o["metadata"]["namespace"] = namespace
    out = kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(o)).stdout
    return json.loads(out)


def selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_app_chart_wires_to_the_operators_children(helm_bin, crds, namespace, cluster_scoped):
    """The test hook, the ServiceMonitor, the Ingress and the Secrets name what the operator creates."""
    objs = render(APP_CHART, ["-f", str(APP_CHART / "values-dev.yaml"),
                              "-f", str(APP_CHART / "ci" / "observability-values.yaml")], namespace)
    (osvc,) = [o for o in objs if o["kind"] == "OrderService"]
    kids = operator_children(defaulted(osvc, namespace), namespace)
    by_kind = {}
    for k in kids:
        by_kind.setdefault(k["kind"], []).append(k)
    # The operator's children are valid too (the same strict server-side dry-run).
    dry_run(kids, namespace, cluster_scoped)

    (svc,) = by_kind["Service"]
    (ingress,) = by_kind["Ingress"]
    assert ingress["spec"]["rules"][0]["host"] == "simplecqrs.local"
    assert "ingressClassName" not in ingress["spec"], "values-dev: the cluster's default IngressClass"
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in by_kind["Deployment"]}
    # helm test pod -> the API Service, port 80.
    (hook,) = [o for o in objs if o["kind"] == "Pod"]
    env = {e["name"]: e["value"] for e in hook["spec"]["containers"][0]["env"]}
    assert env["SIMPLECQRS_API_URL"] == f"http://{svc['metadata']['name']}.{namespace}.svc"
    assert [p["port"] for p in svc["spec"]["ports"]] == [80]
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # ServiceMonitor -> the API Service (port http), and the chart's headless Services for the
    # relay (a container of the API pods) and the consumer, whose named ports the pods declare.
    (sm,) = [o for o in objs if o["kind"] == "ServiceMonitor"]
    assert selects(sm["spec"]["selector"], svc["metadata"]["labels"])
    assert "http" in {p["name"] for p in svc["spec"]["ports"]}
    scraped = {"http"}
    for component, pods in (("relay", "api"), ("consumer", "consumer")):
        (ms,) = [o for o in objs if o["kind"] == "Service" and o["metadata"]["name"].endswith(f"-{component}-metrics")]
        assert selects(sm["spec"]["selector"], ms["metadata"]["labels"]), component
        pod = deployments[pods]["spec"]["template"]
        assert selects({"matchLabels": ms["spec"]["selector"]}, pod["metadata"]["labels"]), component
        declared = {(p["name"], p["containerPort"]) for c in pod["spec"]["containers"] for p in c["ports"]}
        (port,) = ms["spec"]["ports"]
        assert (port["targetPort"], port["port"]) in declared, (component, declared)
        scraped.add(port["name"])
    assert {e["port"] for e in sm["spec"]["endpoints"]} == scraped
    rules = by_kind["NetworkPolicy"][0]["spec"]["ingress"]
    netpol_ports = {p["port"] for rule in rules for p in rule["ports"]}
    assert {9101, 9102, 8080} <= netpol_ports, "Prometheus must be let in"
    # The API port admits the test hook (a labelled client of this namespace) and the ingress controller.
    (api_rule,) = [r for r in rules if {p["port"] for p in r["ports"]} == {8080}]
    assert any("namespaceSelector" not in peer and selects(peer["podSelector"], hook["metadata"]["labels"])
               for peer in api_rule["from"])
    assert any("traefik" in expr["values"] for peer in api_rule["from"]
               for expr in peer.get("namespaceSelector", {}).get("matchExpressions", []))
    # Stores: the OrderService names the bundled Secret and Services.
    (secret,) = [o for o in objs if o["kind"] == "Secret"]
    assert osvc["spec"]["mysql"]["adminSecretRef"]["name"] == secret["metadata"]["name"]
    assert set(secret["data"]) == {"username", "password"}
    assert secret["metadata"]["labels"]["simplecqrs.io/credentials"] == "true", "the operator uses labelled Secrets only"
    services = {o["metadata"]["name"] for o in objs if o["kind"] == "Service"}
    assert osvc["spec"]["mysql"]["host"].split(".")[0] in services
    assert osvc["spec"]["cassandra"]["contactPoints"][0].split(".")[0] in services
    (kafka,) = [o for o in objs if o["kind"] == "Kafka"]
    assert osvc["spec"]["kafka"]["strimzi"]["cluster"] == kafka["metadata"]["name"]
    bootstrap = f"{kafka['metadata']['name']}-kafka-bootstrap.{namespace}.svc:9092"
    assert osvc["spec"]["kafka"]["bootstrapServers"] == bootstrap
    (pool,) = [o for o in objs if o["kind"] == "KafkaNodePool"]
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}, "KRaft: the pool's nodes are both"
    # The operator's NetworkPolicy (ingress only to the API and metrics ports) must not catch
    # the stores: their pods carry their own app.kubernetes.io/name (Strimzi copies the labels).
    (netpol,) = by_kind["NetworkPolicy"]
    for o in objs:
        labels = (o["spec"]["template"]["metadata"]["labels"] if o["kind"] == "StatefulSet"
                  else o["metadata"].get("labels", {}) if o["kind"] in ("Kafka", "KafkaNodePool") else None)
        if labels is not None:
            assert not selects(netpol["spec"]["podSelector"], labels), f"{o['kind']}/{o['metadata']['name']}"
    assert selects(netpol["spec"]["podSelector"], deployments["api"]["spec"]["template"]["metadata"]["labels"])


def test_dashboard_shows_the_metrics_the_code_exports(helm_bin):
    objs = render(APP_CHART, ["-f", str(APP_CHART / "ci" / "observability-values.yaml")])
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["simplecqrs.json"])
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    for metric in ("simplecqrs_http_requests_total", "simplecqrs_http_request_duration_seconds",
                   "simplecqrs_outbox_backlog", "simplecqrs_consumer_lag",
                   "simplecqrs_consumer_projection_delay_seconds", "simplecqrs_orders_placed_total",
                   "container_cpu_usage_seconds_total"):
        assert metric in exprs, metric
    titles = [p["title"] for p in dash["panels"]]
    assert any(t.startswith("Freshness") for t in titles) and "CPU per pod (cores)" in titles, titles
    source = (ROOT / "app" / "metrics.py").read_text() + (ROOT / "consumer" / "metrics.py").read_text()
    for used in set(re.findall(r"simplecqrs_\w+", exprs)):
        base = re.sub(r"_(bucket|sum|count)$", "", used)
        assert f'"{base}"' in source, f"the dashboard uses {used}, which the code does not export"


def test_generated_secret_is_random_and_stable_across_upgrades(helm_bin, crds, namespace):
    """randAlphaNum on install, lookup on upgrade (a real install: no pods run, objects are stored)."""
    release = "stores"
    args = ["--namespace", namespace, "-f", str(APP_CHART / "ci" / "stores-only-values.yaml")]
    secret_name = f"{release}-simplecqrs-mysql-admin"

    def password() -> str:
        out = kubectl("-n", namespace, "get", "secret", secret_name, "-o", "jsonpath={.data.password}").stdout
        import base64

        return base64.b64decode(out).decode()

    try:
        helm("install", release, APP_CHART, *args)
        first = password()
        assert re.fullmatch(r"[A-Za-z0-9]{32}", first)
        helm("upgrade", release, APP_CHART, *args, "--set", "mysql.deploy.resources.limits.memory=768Mi")
        assert password() == first, "helm upgrade changed the generated password"
    finally:
        helm("uninstall", release, "--namespace", namespace, "--wait=false", check=False)
    # Kept on uninstall (helm.sh/resource-policy: keep): the data volume outlives the release.
    assert password() == first
    # helm template (no cluster to look up) draws a new password every time: nothing is a fixed default.
    dev = ["-f", str(APP_CHART / "values-dev.yaml")]
    a, b = ([o for o in render(APP_CHART, [*dev, "--set", f"tests.timeoutSeconds={n}"])
             if o["kind"] == "Secret"][0]["data"]["password"] for n in (60, 61))
    assert a != b

def test_store_network_policies_admit_only_the_instance_and_the_operator(helm_bin, crds, namespace):
    """MySQL: the API pods (with their relay) and the operator; Cassandra: the API, the consumer, the operator."""
    objs = render(APP_CHART, ["-f", str(APP_CHART / "values-dev.yaml")], namespace)
    (osvc,) = [o for o in objs if o["kind"] == "OrderService"]
    kids = operator_children(defaulted(osvc, namespace), namespace)
    pods = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["metadata"]["labels"]
            for d in kids if d["kind"] == "Deployment"}
    operator_pod = next(o for o in render(OPERATOR_CHART, []) if o["kind"] == "Deployment")["spec"]["template"]
    policies = {p["metadata"]["labels"]["app.kubernetes.io/name"]: p for p in objs if p["kind"] == "NetworkPolicy"}
    stores = {o["metadata"]["labels"]["app.kubernetes.io/name"]: o for o in objs if o["kind"] == "StatefulSet"}
    for store, clients in (("mysql", {"api"}), ("cassandra", {"api", "consumer"})):
        policy = policies[store]["spec"]
        assert selects(policy["podSelector"], stores[store]["spec"]["template"]["metadata"]["labels"])
        (rule,) = policy["ingress"]
        peers = rule["from"]
        admitted = {c for c, labels in pods.items() if any(selects(p["podSelector"], labels)
                                                           for p in peers if "namespaceSelector" not in p)}
        assert admitted == clients, (store, admitted)
        (op_peer,) = [p for p in peers if "namespaceSelector" in p]
        assert selects(op_peer["podSelector"], operator_pod["metadata"]["labels"])
