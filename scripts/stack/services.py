"""simplecqrs on the local node, the way a user runs it: pods, installed with the Helm charts.

1. `image`: the product image, built by a real `docker build` of the Dockerfile on the base made
   here (images.py), imported into the node's containerd.  Its tag is `dev-<image id>`, so a
   source change gives a new tag and the Deployments roll.
2. `operator`: `helm upgrade --install simplecqrs-operator charts/simplecqrs-operator` into
   simplecqrs-system (CRDs, ServiceAccount, RBAC, Deployment).
3. `orderservice`: the MySQL admin Secret (from .local/etc/credentials.env) and
   `helm upgrade --install simplecqrs charts/simplecqrs -f charts/simplecqrs/values-local.yaml`
   into simplecqrs; the operator provisions the topic, database and keyspace and creates the API
   and consumer Deployments, the Service and the Ingress.  Ready when the OrderService says so.

The API is served by the stack's Traefik through the Ingress at http://127.0.0.1/ (Host
simplecqrs.local) and, for scripts and the README's examples, at http://127.0.0.1:8080/ (a
Traefik entry point that sends everything to the same Service; ingress.py).

Nothing of the product runs as a host process any more.
"""
from __future__ import annotations

import base64
import json
import os
import time

from tenacity import Retrying, retry_if_exception_type, retry_if_result, stop_after_delay, wait_fixed

from . import console, containerd, core, errors, network, paths, waits
from .credentials import credentials
from .node import helm, kubectl

NAMESPACE = "simplecqrs"
OPERATOR_NAMESPACE = "simplecqrs-system"
OPERATOR_SELECTOR = "app.kubernetes.io/name=simplecqrs-operator"   # the operator chart's and manifests' pods
INSTANCE = "simplecqrs"                       # orderService.name in values-local.yaml
ADMIN_SECRET = "simplecqrs-mysql-admin"       # the chart's default mysql.adminSecret.name
OPERATOR_CHART = paths.ROOT / "charts" / "simplecqrs-operator"
APP_CHART = paths.ROOT / "charts" / "simplecqrs"
LOCAL_VALUES = APP_CHART / "values-local.yaml"
IMAGE_REPOSITORY = "simplecqrs"
IMAGE_TAG_FILE = paths.RUN / "image.tag"       # the tag `make up` deployed last
API_URL = "http://127.0.0.1:8080"
INGRESS_URL = "http://127.0.0.1"
INGRESS_HOST = "simplecqrs.local"


def kube_json(*args: str) -> dict | None:
    out = kubectl("get", *args, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def orderservice(namespace: str = NAMESPACE, name: str = INSTANCE) -> dict | None:
    return kube_json("-n", namespace, "orderservice", name)


def conditions(obj: dict | None) -> dict[str, dict]:
    return {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions", [])}


def image_ref() -> str:
    tag = IMAGE_TAG_FILE.read_text().strip() if IMAGE_TAG_FILE.exists() else "dev"
    return f"{IMAGE_REPOSITORY}:{tag}"


# ---------------------------------------------------------------- the settings host scripts use
ENV_FILE = paths.ETC / "app.env"


def _secret_data(namespace: str, name: str) -> dict[str, str]:
    secret = kube_json("-n", namespace, "secret", name) or {}
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def _from_host(host: str, what: str, address: str) -> str:
    """A store's address in an OrderService, as the host reaches it: the node's forwards make the
    host's own stores GATEWAY to the pods, and the host reaches them on 127.0.0.1."""
    if host in (network.GATEWAY, "127.0.0.1", "localhost"):
        return "127.0.0.1"
    raise errors.StackError(address, f"its {what} {host} is not one the host reaches (only the local stack's stores "
                                     f"at {network.GATEWAY} are)")


def instance_env(address: str = f"{NAMESPACE}/{INSTANCE}") -> dict[str, str]:
    """The instance's settings as seen from the host, read live: its OrderService's spec and the
    Secrets the operator keeps (the application user's password as it is now), the stores at the
    host's addresses.  What scripts/audit, bench, seed and rebuild-read-model run with (scripts/host.py);
    a StackError in one line when there is no stack or no such instance."""
    from . import cassandra, kafka, writestore

    namespace, _, name = address.partition("/")
    if not name:
        raise errors.StackError(address, "an instance is NAMESPACE/NAME")
    if kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode != 0:
        raise errors.StackError("stack", f"no Kubernetes API answers with {paths.KUBECONFIG}: is the stack up? (make up)")
    osvc = orderservice(namespace, name)
    if osvc is None:
        raise errors.StackError(address, f"no OrderService {address} (kubectl get orderservices -A)")
    spec = osvc["spec"]
    app = _secret_data(namespace, f"{name}-mysql-app")
    creds = credentials()
    _from_host(spec["mysql"]["host"], "MySQL", address)
    for point in spec["cassandra"]["contactPoints"]:
        _from_host(point, "Cassandra", address)
    env = {
        "SIMPLECQRS_INSTANCE": address,
        "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(writestore.PORT), "MYSQL_DATABASE": spec["mysql"]["database"],
        "MYSQL_USER": app.get("username", ""), "MYSQL_PASSWORD": app.get("password", ""),
        "MYSQL_ADMIN_USER": creds["MYSQL_ADMIN_USER"], "MYSQL_ADMIN_PASSWORD": creds["MYSQL_ADMIN_PASSWORD"],
        "KAFKA_BOOTSTRAP_SERVERS": kafka.HOST_BOOTSTRAP, "KAFKA_TOPIC": spec["kafka"]["topic"],
        "KAFKA_DLQ_TOPIC": f"{spec['kafka']['topic']}.DLQ",
        "KAFKA_CONSUMER_GROUP": spec["kafka"].get("consumerGroup") or f"{name}-projector",
        "CASSANDRA_CONTACT_POINTS": "127.0.0.1", "CASSANDRA_PORT": str(cassandra.PORT),
        "CASSANDRA_KEYSPACE": spec["cassandra"]["keyspace"],
        "CASSANDRA_LOCAL_DC": spec["cassandra"].get("localDatacenter", "datacenter1"),
        # Through the stack's Traefik: the Ingress host, or the local instance's own route.
        "API_URL": API_URL if address == f"{NAMESPACE}/{INSTANCE}" else "http://127.0.0.1",
        "API_HOST_HEADER": ((spec.get("api") or {}).get("ingress") or {}).get("host", ""),
    }
    if (spec["kafka"].get("strimzi") or {}).get("authentication"):
        # The topic is closed to clients without a user (its KafkaUsers' ACLs): the scripts read it
        # as the consumers do, with their user, on the SCRAM listener the host reaches (the node's).
        user = _secret_data(namespace, f"{name}-kafka-consumer")
        env.update(KAFKA_BOOTSTRAP_SERVERS=kafka.NODE_SCRAM_BOOTSTRAP, KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                   KAFKA_SASL_MECHANISM="SCRAM-SHA-512", KAFKA_SASL_USERNAME=user.get("username", ""),
                   KAFKA_SASL_PASSWORD=user.get("password", ""))
    return env


def write_env_file() -> None:
    """.local/etc/app.env (0600): instance_env() of `make up`'s instance, for a shell (`set -a; .
    .local/etc/app.env`).  A snapshot: the host tools do not read it, they read the live instance."""
    env = instance_env()
    fd = os.open(ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# make up's instance as seen from the host when make up ran (contains credentials; the host\n"
                "# tools read the live instance instead: scripts/host.py)\n")
        f.writelines(f"{k}={v}\n" for k, v in sorted(env.items()))


def apply_labelled_secret(namespace: str, name: str, data: dict[str, str], hosts: tuple[str, ...] = (),
                          labels: dict[str, str] | None = None, unverified: bool = False) -> None:
    """A Secret the operator may read (label simplecqrs.io/credentials=true) and send to `hosts`
    (annotation simplecqrs.io/allowed-hosts), with `unverified` also over a connection that does not
    verify the server (simplecqrs.io/unverified-transport); applied through stdin: its values never on
    a command line or in the output."""
    meta = {"name": name, "namespace": namespace, "labels": {"simplecqrs.io/credentials": "true", **(labels or {})}}
    annotations = {"simplecqrs.io/allowed-hosts": ",".join(hosts)} if hosts else {}
    if unverified:
        annotations["simplecqrs.io/unverified-transport"] = "true"
    if annotations:
        meta["annotations"] = annotations
    kubectl("apply", "--server-side", "--field-manager=simplecqrs-stack", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "stringData": data}))


def apply_admin_secret(namespace: str, name: str = ADMIN_SECRET) -> None:
    """The MySQL admin account the operator provisions with, for the host's MySQL as pods reach it.
    The stack owns that server: its instances may read the binlog (simplecqrs.io/binlog), and reach it
    over the node's own bridge, a link it trusts: also without a CA (the tests' instances name none;
    `make up`'s names the server's, apply_mysql_ca_secret, and verifies it)."""
    creds = credentials()
    apply_labelled_secret(namespace, name, {"username": creds["MYSQL_ADMIN_USER"],
                                            "password": creds["MYSQL_ADMIN_PASSWORD"]}, hosts=(network.GATEWAY,),
                          labels={"simplecqrs.io/binlog": "true"}, unverified=True)


def prepare_namespace() -> None:
    """What the local instance's namespace needs before the chart (as its owners give it): the
    namespace, the admin Secret, and the Kafka cluster owner's grant of the instance's topic and
    group names (values-local.yaml: topic OnNewOrder, group <name>-projector)."""
    from . import kafka

    kubectl("create", "namespace", NAMESPACE, check=False)
    apply_admin_secret(NAMESPACE)
    kafka.grant(NAMESPACE, "OnNewOrder*", f"{INSTANCE}-projector")


MYSQL_CA_SECRET = "simplecqrs-mysql-ca"


def apply_mysql_ca_secret(namespace: str) -> str:
    """The write store's CA as the labelled Secret spec.mysql.tls.caSecretRef names, so the operator
    and the pods verify the server's certificate (VERIFY_CA: its auto-generated certificate names
    no host).  Oracle MySQL makes a CA on first start; the local MariaDB has no TLS: "" then."""
    from .writestore import servers

    ca = servers(both=False)[0].ca_file()
    if ca is None:
        return ""
    apply_labelled_secret(namespace, MYSQL_CA_SECRET, {"ca.crt": ca.read_text()})
    return MYSQL_CA_SECRET


def rolled_out(namespace: str, name: str) -> bool:
    """An OrderService Ready for its spec as it is now: the operator has seen this generation, both
    rollouts are complete, and the OrderService says Ready."""
    obj = kube_json("-n", namespace, "orderservice", name) or {}
    if obj.get("status", {}).get("observedGeneration") != obj.get("metadata", {}).get("generation"):
        return False
    for component in ("api", "consumer"):
        d = kube_json("-n", namespace, "deployment", f"{name}-{component}") or {}
        want, st = d.get("spec", {}).get("replicas"), d.get("status", {})
        if (st.get("observedGeneration") != d.get("metadata", {}).get("generation")
                or st.get("updatedReplicas") != want or st.get("availableReplicas") != want
                or st.get("replicas") != want):
            return False
    return conditions(obj).get("Ready", {}).get("status") == "True"


# ---------------------------------------------------------------- components
class ProductImage(core.Component):
    """The product image in the node's image store (never pulled: built here)."""

    name = "image"
    address = "containerd k8s.io namespace"
    process = False
    start_timeout = 30
    requires = ("containerd",)

    def running(self) -> bool:
        return False  # always rebuilt: docker's layer cache makes an unchanged tree a few seconds

    def start(self) -> None:
        from . import images

        # simplecqrs:dev (k8s/examples' image) and simplecqrs:dev-<id>, which makes the
        # Deployments roll when the image changed.
        ref = images.build_into_node(IMAGE_REPOSITORY)
        tag = ref.split(":", 1)[1]
        IMAGE_TAG_FILE.write_text(tag + "\n")
        console.detail(f"image {ref} in the node's image store")

    def ready(self) -> bool:
        return containerd.image_present(image_ref())

    def status(self) -> core.Status:
        try:
            state = "present" if containerd.image_present(image_ref()) else "absent"
        except Exception:  # noqa: BLE001 - containerd stopped
            state = "unknown"
        return core.Status(self.name, state, image_ref(), "-", ".local/logs/install-image.log")


class OperatorRelease(core.Component):
    name = "operator"
    address = f"{OPERATOR_NAMESPACE}/deploy/simplecqrs-operator"
    process = False
    start_timeout = 300
    requires = ("image", "coredns")

    def running(self) -> bool:
        return False  # `helm upgrade` of an unchanged release is a no-op: always run it

    def start(self) -> None:
        tag = image_ref().split(":", 1)[1]
        # Helm installs the chart's crds/ once and never upgrades them (README, "CRD upgrades"): apply
        # them first, as a user upgrading does, or a new CRD field is pruned from every OrderService.
        kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=simplecqrs-stack",
                "-f", str(OPERATOR_CHART / "crds"))
        # Cluster scope, chosen: the instance's Kafka objects live in the Kafka cluster's namespace,
        # and the tests make instances in namespaces of their own.
        helm("upgrade", "--install", "simplecqrs-operator", str(OPERATOR_CHART), "-n", OPERATOR_NAMESPACE,
             "--create-namespace", "--set", f"image.tag={tag}", "--set", "image.pullPolicy=Never",
             "--set", "rbac.scope=cluster",
             "--wait", "--timeout=5m")

    def ready(self) -> bool:
        d = kube_json("-n", OPERATOR_NAMESPACE, "deployment", "simplecqrs-operator") or {}
        return (d.get("status", {}).get("availableReplicas") or 0) >= 1

    def status(self) -> core.Status:
        try:
            state = "running" if self.ready() else "not available"
        except Exception:  # noqa: BLE001
            state = "unknown"
        return core.Status(self.name, state, self.address, image_ref(),
                           f"kubectl -n {OPERATOR_NAMESPACE} logs deploy/simplecqrs-operator")


class Instance(core.Component):
    """The OrderService `simplecqrs` from charts/simplecqrs with values-local.yaml."""

    name = "orderservice"
    address = f"{NAMESPACE}/{INSTANCE}"
    process = False
    start_timeout = 300
    requires = ("operator", "traefik", "kafka")

    def running(self) -> bool:
        return False

    def start(self) -> None:
        prepare_namespace()
        tls = apply_mysql_ca_secret(NAMESPACE)
        tag = image_ref().split(":", 1)[1]
        helm("upgrade", "--install", INSTANCE, str(APP_CHART), "-n", NAMESPACE, "-f", str(LOCAL_VALUES),
             "--set", f"image.tag={tag}", "--set", f"mysql.tls.caSecret.name={tls}", "--timeout=5m")

    def ready(self) -> bool:
        return rolled_out(NAMESPACE, INSTANCE)

    def wait_ready(self) -> None:
        t0 = time.monotonic()
        waits.wait_until(self.ready, component=self.name, what="Ready (stores provisioned, pods rolled out)",
                         timeout=self.start_timeout)
        console.detail(f"OrderService {self.address} Ready after {time.monotonic() - t0:.0f}s")
        write_env_file()
        order_id = smoke_order()
        console.detail(f"order {order_id} accepted and read back through {INGRESS_URL} (Host {INGRESS_HOST}) "
                       f"{time.monotonic() - t0:.0f}s after the charts were applied")

    def status(self) -> core.Status:
        try:
            obj = orderservice()
        except Exception:  # noqa: BLE001 - no apiserver, no kubectl
            obj = None
        if obj is None:
            state = "absent"
        else:
            ready = conditions(obj).get("Ready", {})
            state = "Ready" if ready.get("status") == "True" else f"not ready ({ready.get('reason', '?')})"
        return core.Status(self.name, state, f"{self.address} via {INGRESS_URL} Host {INGRESS_HOST}", "-",
                           f"kubectl -n {NAMESPACE} describe orderservice {INSTANCE}")


def simplecqrs_components() -> list[core.Component]:
    return [ProductImage(), OperatorRelease(), Instance()]


SMOKE_ORDER = {"description": "make up smoke test", "quantity": 1, "email": "smoke@simplecqrs.local",
               "firstName": "Make", "lastName": "Up"}


def smoke_order(timeout: float = 60) -> str:
    """POST one order through the Ingress and read it back through it (the same Idempotency-Key
    every time: repeated `make up`s give the same order).  Returns its id."""
    import urllib.error
    import urllib.request

    def call(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(  # noqa: S310 - the local Ingress on loopback
            f"{INGRESS_URL}{path}", method=method, data=json.dumps(body).encode() if body else None,
            headers={"Host": INGRESS_HOST, "Content-Type": "application/json", "Idempotency-Key": "make-up-smoke"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, {}

    def round_trip() -> str | None:
        status, body = call("POST", "/orders", SMOKE_ORDER)
        if status in (200, 201):
            order_id = body["id"]
            status, got = call("GET", f"/orders/{order_id}?wait=5000")
            if status == 200 and got.get("id") == order_id:
                return order_id
        return None

    def no_round_trip(state) -> None:
        raise errors.StackError("orderservice", f"no order round trip through {INGRESS_URL} (Host {INGRESS_HOST}) "
                                                f"within {timeout:.0f}s", paths.LOGS / "traefik-access.log")

    # Once a second until an order goes there and back (a refused connection, a bad answer: not yet).
    return Retrying(retry=retry_if_exception_type((OSError, ValueError, KeyError)) | retry_if_result(lambda oid: oid is None),
                    stop=stop_after_delay(timeout), wait=wait_fixed(1), retry_error_callback=no_round_trip)(round_trip)
