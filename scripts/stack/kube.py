"""A Kubernetes control plane as local processes: etcd, kube-apiserver, kube-controller-manager.

The node that runs the pods (containerd, kubelet, kube-scheduler, kube-proxy) is node.py; the
certificates of every component, node ones included, are made here from one local CA.

Certificates (one local CA) are generated once with the `openssl` CLI into
.local/etc/pki; .local/kubeconfig holds the admin user (CN=admin,
O=system:masters).  Everything listens on 127.0.0.1 only.  Standard library only.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import subprocess
from pathlib import Path

from . import core, gotools
from .addresses import APISERVER_PORT, GATEWAY, KUBERNETES_SERVICE_IP, SERVICE_CIDR  # noqa: F401 - kube.* too

ETCD_PORT = 2379
ETCD_PEER_PORT = 2380
KCM_PORT = 10257
NODE_NAME = "simplecqrs-node"         # the one node (node.py)
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"

PKI = core.ETC / "pki"

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
def _openssl(*args: str) -> None:
    try:
        subprocess.run(["openssl", *args], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise core.StackError("kube", "the `openssl` command is needed to create certificates") from None
    except subprocess.CalledProcessError as e:
        raise core.StackError("kube", f"openssl {args[0]} failed: {e.stderr.strip()[-300:]}") from None


def _new_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))
    path.chmod(0o600)


def _new_ca(name: str, cn: str) -> None:
    """PKI/<name>.key + a self-signed PKI/<name>.crt (10 years)."""
    key, csr, crt, ext = (PKI / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    _new_key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-out", str(csr))
    ext.write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                   "subjectKeyIdentifier=hash\n")
    _openssl("x509", "-req", "-in", str(csr), "-signkey", str(key), "-days", "3650", "-sha256",
             "-extfile", str(ext), "-out", str(crt))
    csr.unlink()
    ext.unlink()


def _issue(name: str, ca: str, subject: str, extensions: list[str]) -> None:
    """PKI/<name>.key + PKI/<name>.crt signed by PKI/<ca>.crt (10 years)."""
    key, csr, crt, ext = (PKI / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    _new_key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    # An -extfile without -extensions: its default section is used as is, so
    # nothing from the system openssl.cnf leaks into the certificate.
    ext.write_text("\n".join(["basicConstraints=critical,CA:FALSE", "subjectKeyIdentifier=hash",
                              "authorityKeyIdentifier=keyid,issuer", *extensions]) + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(PKI / f"{ca}.crt"), "-CAkey", str(PKI / f"{ca}.key"),
             "-set_serial", str(int.from_bytes(os.urandom(16), "big") >> 1), "-days", "3650", "-sha256",
             "-extfile", str(ext), "-out", str(crt))
    csr.unlink()
    ext.unlink()


SERVER_USAGE = ["keyUsage=critical,digitalSignature,keyEncipherment", "extendedKeyUsage=serverAuth"]
CLIENT_USAGE = ["keyUsage=critical,digitalSignature,keyEncipherment", "extendedKeyUsage=clientAuth"]

# CAs: name -> CN.  The front-proxy CA only signs the apiserver's proxy client
# certificate (requestheader authentication of aggregated APIs, as kubeadm sets up);
# without it kube-controller-manager logs "missing content for CA bundle" forever.
CAS = {"ca": "simplecqrs-local-ca", "front-proxy-ca": "simplecqrs-local-front-proxy-ca"}

# name -> (CA, subject, extensions)
LEAF_CERTS = {
    "apiserver": ("ca", "/CN=kube-apiserver", SERVER_USAGE + [
        "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"]),
    "kube-controller-manager-serving": ("ca", "/CN=kube-controller-manager", SERVER_USAGE + [
        "subjectAltName=IP:127.0.0.1,DNS:localhost"]),
    # Users: the CN is the user name, O the group.  system:masters bypasses RBAC;
    # system:kube-controller-manager has its own bootstrap ClusterRole.
    "admin": ("ca", "/O=system:masters/CN=admin", CLIENT_USAGE),
    "kube-controller-manager": ("ca", "/CN=system:kube-controller-manager", CLIENT_USAGE),
    "front-proxy-client": ("front-proxy-ca", "/CN=front-proxy-client", CLIENT_USAGE),
    # The node (node.py).  The kubelet's user is system:node:<name> in system:nodes: the Node
    # authorizer and NodeRestriction then limit it to its own node and its pods.
    "kubelet": ("ca", f"/O=system:nodes/CN=system:node:{NODE_NAME}", CLIENT_USAGE),
    "kubelet-serving": ("ca", f"/CN={NODE_NAME}", SERVER_USAGE + [
        f"subjectAltName=IP:{GATEWAY},DNS:{NODE_NAME}"]),
    "kube-scheduler": ("ca", "/CN=system:kube-scheduler", CLIENT_USAGE),
    "kube-scheduler-serving": ("ca", "/CN=kube-scheduler", SERVER_USAGE + ["subjectAltName=IP:127.0.0.1,DNS:localhost"]),
    "kube-proxy": ("ca", "/CN=system:kube-proxy", CLIENT_USAGE),
    # The apiserver's identity towards kubelets (logs, exec, port-forward); the kubelet asks the
    # apiserver whether it may (webhook authorization): system:kubelet-api-admin is bound to it.
    "apiserver-kubelet-client": ("ca", "/CN=kube-apiserver-kubelet-client", CLIENT_USAGE),
    # The ingress controller, a host process (ingress.py); its ClusterRole is applied at its start.
    "simplecqrs-ingress": ("ca", "/CN=simplecqrs-ingress", CLIENT_USAGE),
    # The NetworkPolicy enforcer, a host process (netpol.py); its ClusterRole likewise.
    "simplecqrs-netpol": ("ca", "/CN=simplecqrs-netpol", CLIENT_USAGE),
}


def ensure_pki() -> None:
    """Create the CAs, serving/client certificates and the service-account key pair once."""
    PKI.mkdir(parents=True, exist_ok=True)
    PKI.chmod(0o700)
    for ca, cn in CAS.items():
        if not (PKI / f"{ca}.crt").exists() or not (PKI / f"{ca}.key").exists():
            core.say(f"creating {cn} and its certificates in {PKI}")
            _new_ca(ca, cn)
            # A new CA invalidates everything it signed before.
            for name, (issuer, _, _) in LEAF_CERTS.items():
                if issuer == ca:
                    (PKI / f"{name}.crt").unlink(missing_ok=True)
    for name, (ca, subject, extensions) in LEAF_CERTS.items():
        if not (PKI / f"{name}.crt").exists():
            _issue(name, ca, subject, extensions)
    if not (PKI / "sa.key").exists() or not (PKI / "sa.pub").exists():
        # Signs ServiceAccount tokens (apiserver) / legacy token Secrets (controller-manager).
        _new_key(PKI / "sa.key")
        _openssl("pkey", "-in", str(PKI / "sa.key"), "-pubout", "-out", str(PKI / "sa.pub"))
    _write_kubeconfig(core.KUBECONFIG, "admin")
    for user in ("kube-controller-manager", "kubelet", "kube-scheduler", "kube-proxy"):
        _write_kubeconfig(kubeconfig_of(user), user)


def kubeconfig_of(user: str) -> Path:
    return core.ETC / f"{user}.kubeconfig"


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
        raise core.StackError(field_manager, f"applying {obj['kind']} {obj['metadata']['name']}: "
                                             f"HTTP {resp.status}: {body[:300]}")


def prepare_host_client(component: str, exe: Path, ports: tuple[int, ...], user: str, kubeconfig: Path,
                        rules: list[dict], labels: dict[str, str], probe: str, field_manager: str) -> None:
    """What a host process that watches the apiserver as a user of its own (Traefik, kube-router)
    needs before it starts: the apiserver answering, its ports free, its binary built, its client
    certificate (LEAF_CERTS) and kubeconfig, a ClusterRole with `rules` bound to `user`, and RBAC
    letting that user GET `probe` (role bindings reach the authorizer's cache a moment later)."""
    if not KubeApiserver()._ready_quietly():
        raise core.StackError(component, "kube-apiserver is not answering (start it first)")
    core.require_ports_free(component, *ports)
    if not exe.exists():
        raise core.StackError(component, f"{exe} is missing (install first)")
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
    core.wait_until(lambda: _https_get(APISERVER_PORT, probe, client_cert=user)[0] == 200, component=component,
                    timeout=30, what=f"authorized as {user} by kube-apiserver (RBAC)")


def _binary_version(name: str, fallback: str) -> str:
    """`<binary> --version` of the linked tool (first line), or the pinned version."""
    exe = core.BIN / name
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
        return core.DATA / "etcd"

    def install(self) -> None:
        gotools.build_all()

    def start(self) -> None:
        core.require_ports_free(self.name, ETCD_PORT, ETCD_PEER_PORT)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)  # etcd warns about (and 3.6 refuses) looser permissions
        peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
        core.spawn(self.name, [
            str(core.BIN / "etcd"),
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
            raise core.StackError(self.name, "etcd is not running (start it first)")
        core.require_ports_free(self.name, APISERVER_PORT)
        ensure_pki()
        cert_dir = core.DATA / "kube-apiserver"  # unused with --tls-* files, but defaults to /var/run/kubernetes
        cert_dir.mkdir(parents=True, exist_ok=True)
        core.spawn(self.name, [
            str(core.BIN / "kube-apiserver"),
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
            raise core.StackError(self.name, "kube-apiserver is not running (start it first)")
        core.require_ports_free(self.name, KCM_PORT)
        ensure_pki()
        # Right after the apiserver's first start, RBAC may not yet allow this user to
        # read the authentication ConfigMap; kube-controller-manager would exit on that.
        core.wait_until(self._can_read_auth_config, component=self.name, timeout=60,
                        what="authorized by kube-apiserver (RBAC bootstrap)")
        core.spawn(self.name, [
            str(core.BIN / "kube-controller-manager"),
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
