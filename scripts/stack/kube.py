"""A Kubernetes control plane as local processes: etcd, kube-apiserver, kube-controller-manager.

The node that runs the pods (containerd, kubelet, kube-scheduler, kube-proxy) is node.py; the
certificates of every component, node ones included, are made here from one local CA.

Certificates (one local CA) are generated once with `cryptography` into
.local/etc/pki; .local/kubeconfig holds the admin user (CN=admin,
O=system:masters).  Everything listens on 127.0.0.1 only.
"""
from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import json
import os
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import core, gotools
from .addresses import APISERVER_PORT, GATEWAY, KUBERNETES_SERVICE_IP, SERVICE_CIDR  # noqa: F401 - kube.* too
from .console import say
from .errors import StackError
from .paths import BIN, DATA, ETC, KUBECONFIG
from .ports import require_ports_free
from .processes import spawn
from .waits import wait_until

ETCD_PORT = 2379
ETCD_PEER_PORT = 2380
KCM_PORT = 10257
NODE_NAME = "simplecqrs-node"         # the one node (node.py)
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"

PKI = ETC / "pki"

# Controllers run by kube-controller-manager.  Left out: node IPAM (the CNI bridge's host-local
# IPAM owns the pod range), CSR signing/approval (every certificate is made here, none is
# requested), volume attach/detach and expansion (no volume plugins beyond the node's own),
# bootstrap tokens, and the cloud/alpha ones.
KCM_CONTROLLERS = [
    "endpoints-controller",                     # Services get Endpoints / EndpointSlices of ready pods
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "node-lifecycle-controller",                # NotReady nodes get tainted, their pods evicted
    "taint-eviction-controller",
    "pod-garbage-collector-controller",
    "horizontal-pod-autoscaler-controller",     # reads metrics.k8s.io (metrics-server)
    "ttl-after-finished-controller",            # finished Jobs (e.g. helm test pods' Jobs) go away
    "daemonset-controller",
    "persistentvolume-binder-controller",       # PVCs bind to PVs
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "namespace-controller",                     # deleted namespaces go away (finalizer)
    "garbage-collector-controller",             # ownerReference cascade
    "serviceaccount-controller",                # `default` ServiceAccount in each namespace
    "serviceaccount-token-controller",          # tokens for kubernetes.io/service-account-token Secrets
    "root-ca-certificate-publisher-controller",  # kube-root-ca.crt ConfigMap in each namespace
    "clusterrole-aggregation-controller",       # admin/edit/view pick up aggregated rules (e.g. CRDs)
    "resourcequota-controller",                 # ResourceQuota status (admission relies on it)
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "job-controller",
    "cronjob-controller",
    "disruption-controller",                    # PodDisruptionBudget status
]


# ---------------------------------------------------------------- certificates
# Made with `cryptography` as the `openssl` CLI made them before (an existing .local/etc/pki keeps
# working): RSA 2048 keys in unencrypted PKCS#8 PEM (mode 0600), SHA-256 signatures, valid for
# 3650 days from now, UTF-8 names, these extensions in this order and nothing else.
VALIDITY = datetime.timedelta(days=3650)
SERVER = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH


def _new_key(path: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    path.chmod(0o600)
    return key


def _key_usage(**usages: bool) -> x509.KeyUsage:
    """keyUsage with the given bits set, every other one clear."""
    bits = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
            "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{**dict.fromkeys(bits, False), **usages})


def _certificate(subject: x509.Name, issuer: x509.Name, key: rsa.RSAPublicKey, serial: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key)
            .serial_number(serial).not_valid_before(now).not_valid_after(now + VALIDITY))


def _new_ca(name: str, cn: str) -> None:
    """PKI/<name>.key + a self-signed PKI/<name>.crt (10 years)."""
    key = _new_key(PKI / f"{name}.key")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (_certificate(subject, subject, key.public_key(), x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    (PKI / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class Leaf:
    """A certificate that one of CAS signs: CN (after O, when there is one), a server's or a
    client's, and for a server the addresses and DNS names it answers to, in this order."""

    ca: str
    cn: str
    usage: x509.ObjectIdentifier      # SERVER or CLIENT (extendedKeyUsage)
    o: str | None = None
    alt_names: tuple[str, ...] = ()

    def subject(self) -> x509.Name:
        o = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.o)] if self.o else []
        return x509.Name([*o, x509.NameAttribute(NameOID.COMMON_NAME, self.cn)])

    def general_names(self) -> list[x509.GeneralName]:
        def one(name: str) -> x509.GeneralName:
            try:
                return x509.IPAddress(ipaddress.ip_address(name))
            except ValueError:
                return x509.DNSName(name)
        return [one(n) for n in self.alt_names]


def _issue(name: str, leaf: Leaf) -> None:
    """PKI/<name>.key + PKI/<name>.crt signed by PKI/<leaf.ca>.crt (10 years)."""
    ca_cert = x509.load_pem_x509_certificate((PKI / f"{leaf.ca}.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((PKI / f"{leaf.ca}.key").read_bytes(), password=None)
    ca_key_id = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    key = _new_key(PKI / f"{name}.key")
    cert = (_certificate(leaf.subject(), ca_cert.subject, key.public_key(), int.from_bytes(os.urandom(16), "big") >> 1)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id), critical=False)
            .add_extension(_key_usage(digital_signature=True, key_encipherment=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([leaf.usage]), critical=False))
    if leaf.alt_names:
        cert = cert.add_extension(x509.SubjectAlternativeName(leaf.general_names()), critical=False)
    (PKI / f"{name}.crt").write_bytes(cert.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


# CAs: name -> CN.  The front-proxy CA only signs the apiserver's proxy client
# certificate (requestheader authentication of aggregated APIs, as kubeadm sets up);
# without it kube-controller-manager logs "missing content for CA bundle" forever.
CAS = {"ca": "simplecqrs-local-ca", "front-proxy-ca": "simplecqrs-local-front-proxy-ca"}

LEAF_CERTS = {
    "apiserver": Leaf("ca", "kube-apiserver", SERVER, alt_names=(
        "127.0.0.1", KUBERNETES_SERVICE_IP, "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local")),
    "kube-controller-manager-serving": Leaf("ca", "kube-controller-manager", SERVER, alt_names=("127.0.0.1", "localhost")),
    # Users: the CN is the user name, O the group.  system:masters bypasses RBAC;
    # system:kube-controller-manager has its own bootstrap ClusterRole.
    "admin": Leaf("ca", "admin", CLIENT, o="system:masters"),
    "kube-controller-manager": Leaf("ca", "system:kube-controller-manager", CLIENT),
    "front-proxy-client": Leaf("front-proxy-ca", "front-proxy-client", CLIENT),
    # The node (node.py).  The kubelet's user is system:node:<name> in system:nodes: the Node
    # authorizer and NodeRestriction then limit it to its own node and its pods.
    "kubelet": Leaf("ca", f"system:node:{NODE_NAME}", CLIENT, o="system:nodes"),
    "kubelet-serving": Leaf("ca", NODE_NAME, SERVER, alt_names=(GATEWAY, NODE_NAME)),
    "kube-scheduler": Leaf("ca", "system:kube-scheduler", CLIENT),
    "kube-scheduler-serving": Leaf("ca", "kube-scheduler", SERVER, alt_names=("127.0.0.1", "localhost")),
    "kube-proxy": Leaf("ca", "system:kube-proxy", CLIENT),
    # The apiserver's identity towards kubelets (logs, exec, port-forward); the kubelet asks the
    # apiserver whether it may (webhook authorization): system:kubelet-api-admin is bound to it.
    "apiserver-kubelet-client": Leaf("ca", "kube-apiserver-kubelet-client", CLIENT),
    # The ingress controller, a host process (ingress.py); its ClusterRole is applied at its start.
    "simplecqrs-ingress": Leaf("ca", "simplecqrs-ingress", CLIENT),
    # The NetworkPolicy enforcer, a host process (netpol.py); its ClusterRole likewise.
    "simplecqrs-netpol": Leaf("ca", "simplecqrs-netpol", CLIENT),
}


def ensure_pki() -> None:
    """Create the CAs, serving/client certificates and the service-account key pair once."""
    PKI.mkdir(parents=True, exist_ok=True)
    PKI.chmod(0o700)
    for ca, cn in CAS.items():
        if not (PKI / f"{ca}.crt").exists() or not (PKI / f"{ca}.key").exists():
            say(f"creating {cn} and its certificates in {PKI}")
            _new_ca(ca, cn)
            # A new CA invalidates everything it signed before.
            for name, leaf in LEAF_CERTS.items():
                if leaf.ca == ca:
                    (PKI / f"{name}.crt").unlink(missing_ok=True)
    for name, leaf in LEAF_CERTS.items():
        if not (PKI / f"{name}.crt").exists():
            _issue(name, leaf)
    if not (PKI / "sa.key").exists() or not (PKI / "sa.pub").exists():
        # Signs ServiceAccount tokens (apiserver) / legacy token Secrets (controller-manager).
        public = _new_key(PKI / "sa.key").public_key()
        (PKI / "sa.pub").write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    _write_kubeconfig(KUBECONFIG, "admin")
    for user in ("kube-controller-manager", "kubelet", "kube-scheduler", "kube-proxy"):
        _write_kubeconfig(kubeconfig_of(user), user)


def kubeconfig_of(user: str) -> Path:
    return ETC / f"{user}.kubeconfig"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_kubeconfig(path: Path, user: str) -> None:
    """A kubeconfig with the CA and the user's client certificate embedded."""
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: simplecqrs-local
  cluster:
    server: https://127.0.0.1:{APISERVER_PORT}
    certificate-authority-data: {_b64(PKI / "ca.crt")}
users:
- name: {user}
  user:
    client-certificate-data: {_b64(PKI / f"{user}.crt")}
    client-key-data: {_b64(PKI / f"{user}.key")}
contexts:
- name: simplecqrs-local
  context:
    cluster: simplecqrs-local
    user: {user}
current-context: simplecqrs-local
"""
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o600)


def _https_get(port: int, path: str, client_cert: str | None = "admin") -> tuple[int, str]:
    """GET https://127.0.0.1:<port><path>, verifying the server against the local CA."""
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    if client_cert:
        ctx.load_cert_chain(str(PKI / f"{client_cert}.crt"), str(PKI / f"{client_cert}.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def apply_as_admin(path: str, obj: dict, field_manager: str) -> None:
    """Server-side apply of one object (forced) as the admin user; `path`: its collection's URL path."""
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    ctx.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", APISERVER_PORT, timeout=10, context=ctx)
    try:
        conn.request("PATCH", f"{path}/{obj['metadata']['name']}?fieldManager={field_manager}&force=true",
                     body=json.dumps(obj), headers={"Content-Type": "application/apply-patch+yaml"})
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
    finally:
        conn.close()
    if resp.status not in (200, 201):
        try:
            body = json.loads(body).get("message", body)
        except ValueError:
            pass
        raise StackError(field_manager, f"applying {obj['kind']} {obj['metadata']['name']}: "
                                        f"HTTP {resp.status}: {body[:300]}")


def prepare_host_client(component: str, exe: Path, ports: tuple[int, ...], user: str, kubeconfig: Path,
                        rules: list[dict], labels: dict[str, str], probe: str, field_manager: str) -> None:
    """What a host process that watches the apiserver as a user of its own (Traefik, kube-router)
    needs before it starts: the apiserver answering, its ports free, its binary built, its client
    certificate (LEAF_CERTS) and kubeconfig, a ClusterRole with `rules` bound to `user`, and RBAC
    letting that user GET `probe` (role bindings reach the authorizer's cache a moment later)."""
    if not KubeApiserver()._ready_quietly():
        raise StackError(component, "kube-apiserver is not answering (start it first)")
    require_ports_free(component, *ports)
    if not exe.exists():
        raise StackError(component, f"{exe} is missing (install first)")
    ensure_pki()
    _write_kubeconfig(kubeconfig, user)
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    meta = {"name": user, "labels": labels}
    apply_as_admin(f"{rbac}/clusterroles", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                            "metadata": meta, "rules": rules}, field_manager)
    apply_as_admin(f"{rbac}/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}, field_manager)
    wait_until(lambda: _https_get(APISERVER_PORT, probe, client_cert=user)[0] == 200, component=component,
               timeout=30, what=f"authorized as {user} by kube-apiserver (RBAC)")


def _binary_version(name: str, fallback: str) -> str:
    """`<binary> --version` of the linked tool (first line), or the pinned version."""
    exe = BIN / name
    if not exe.exists():
        return fallback
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return fallback
    # etcd: "etcd Version: 3.5.24"; kube-*: "Kubernetes v1.32.13"
    first = out.strip().splitlines()[0] if out.strip() else ""
    return "v" + first.split()[-1].lstrip("v") if first else fallback


# ---------------------------------------------------------------- components
class Etcd(core.Component):
    name = "etcd"
    address = f"http://127.0.0.1:{ETCD_PORT}"
    start_timeout = 60

    @property
    def data_dir(self) -> Path:
        return DATA / "etcd"

    def install(self) -> None:
        gotools.build_all()

    def start(self) -> None:
        require_ports_free(self.name, ETCD_PORT, ETCD_PEER_PORT)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)  # etcd warns about (and 3.6 refuses) looser permissions
        peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
        spawn(self.name, [
            str(BIN / "etcd"),
            "--name=local",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.address}",
            f"--advertise-client-urls={self.address}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=local={peer}",
            # Local dev/test only: skip fsync.  Much faster on slow disks; a machine
            # crash (not a process crash) can lose the last writes.
            "--unsafe-no-fsync",
        ])

    def ready(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", ETCD_PORT, timeout=5)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            return resp.status == 200 and json.loads(resp.read()).get("health") == "true"
        finally:
            conn.close()

    def version(self) -> str:
        return _binary_version("etcd", gotools.ETCD_VERSION)


class KubeApiserver(core.Component):
    name = "kube-apiserver"
    address = f"https://127.0.0.1:{APISERVER_PORT}"
    start_timeout = 180  # first start bootstraps RBAC/priority levels; slow on 2 cores

    def install(self) -> None:
        gotools.build_all()
        ensure_pki()

    def start(self) -> None:
        if not Etcd().running():
            raise StackError(self.name, "etcd is not running (start it first)")
        require_ports_free(self.name, APISERVER_PORT)
        ensure_pki()
        cert_dir = DATA / "kube-apiserver"  # unused with --tls-* files, but defaults to /var/run/kubernetes
        cert_dir.mkdir(parents=True, exist_ok=True)
        spawn(self.name, [
            str(BIN / "kube-apiserver"),
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={APISERVER_PORT}",
            f"--cert-dir={cert_dir}",
            f"--etcd-servers=http://127.0.0.1:{ETCD_PORT}",
            f"--tls-cert-file={PKI / 'apiserver.crt'}",
            f"--tls-private-key-file={PKI / 'apiserver.key'}",
            f"--client-ca-file={PKI / 'ca.crt'}",
            # Node: the kubelet may touch only its node and its pods' objects (with NodeRestriction).
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={PKI / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={PKI / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={PKI / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            # Aggregated APIs (metrics-server) are called at their pods' addresses, which the
            # host routes to; a Service address would need kube-proxy's rules on the host's own
            # traffic as well.
            "--enable-aggregator-routing=true",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={PKI / 'sa.pub'}",
            f"--service-account-signing-key-file={PKI / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # The `kubernetes` Service keeps no endpoints: Endpoints validation rejects the
            # loopback advertise address (the default reconciler would log an error every 10s).
            # With `none`, each start logs one harmless "Found stale data, removed previous endpoints".
            "--endpoint-reconciler-type=none",
            # Front-proxy (requestheader) authentication for aggregated APIs, as on kubeadm clusters.
            f"--requestheader-client-ca-file={PKI / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={PKI / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={PKI / 'front-proxy-client.key'}",
            # Default admission plugins (NamespaceLifecycle, ServiceAccount, ResourceQuota, ...);
            # they work because kube-controller-manager creates default ServiceAccounts.
        ])

    def ready(self) -> bool:
        status, body = _https_get(APISERVER_PORT, "/readyz")
        return status == 200 and body.strip() == "ok"

    def version(self) -> str:
        return _binary_version("kube-apiserver", gotools.K8S_VERSION)


def control_plane_flags(user: str, port: int) -> list[str]:
    """What kube-controller-manager and kube-scheduler share: their own user's kubeconfig (also for
    the delegated authn/authz of their /metrics; /healthz, /readyz, /livez stay open), HTTPS on
    127.0.0.1:<port> with a certificate of the local CA, one instance (no leader election)."""
    kubeconfig = kubeconfig_of(user)
    return [f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1", f"--secure-port={port}",
            f"--tls-cert-file={PKI / f'{user}-serving.crt'}", f"--tls-private-key-file={PKI / f'{user}-serving.key'}",
            "--leader-elect=false"]


class KubeControllerManager(core.Component):
    name = "kube-controller-manager"
    address = f"https://127.0.0.1:{KCM_PORT}"
    start_timeout = 60

    def install(self) -> None:
        gotools.build_all()
        ensure_pki()

    def start(self) -> None:
        if not KubeApiserver().running():
            raise StackError(self.name, "kube-apiserver is not running (start it first)")
        require_ports_free(self.name, KCM_PORT)
        ensure_pki()
        # Right after the apiserver's first start, RBAC may not yet allow this user to
        # read the authentication ConfigMap; kube-controller-manager would exit on that.
        wait_until(self._can_read_auth_config, component=self.name, timeout=60,
                   what="authorized by kube-apiserver (RBAC bootstrap)")
        spawn(self.name, [
            str(BIN / "kube-controller-manager"),
            *control_plane_flags("kube-controller-manager", KCM_PORT),
            "--controllers=" + ",".join(KCM_CONTROLLERS),
            f"--root-ca-file={PKI / 'ca.crt'}",
            f"--service-account-private-key-file={PKI / 'sa.key'}",
            # Each controller acts as its own ServiceAccount in kube-system (as on kubeadm clusters).
            "--use-service-account-credentials=true",
        ])

    @staticmethod
    def _can_read_auth_config() -> bool:
        status, _ = _https_get(APISERVER_PORT, "/api/v1/namespaces/kube-system/configmaps/"
                               "extension-apiserver-authentication", client_cert="kube-controller-manager")
        return status == 200

    def ready(self) -> bool:
        status, body = _https_get(KCM_PORT, "/healthz", client_cert=None)
        return status == 200 and body.strip() == "ok"

    def version(self) -> str:
        return _binary_version("kube-controller-manager", gotools.K8S_VERSION)
