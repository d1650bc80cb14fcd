"""The local node's NetworkPolicy enforcer: kube-router's firewall (its NetworkPolicy controller) alone,
built from the Go module proxy and run as a host process, like kube-proxy and Traefik.

Without it the node's plain CNI bridge enforces nothing: the policies the operator writes (the API port
only from the ingress controller, labelled clients `simplecqrs.io/api-client=true` and the monitoring
namespaces) and Strimzi's (Kafka's replication and control ports only from its own pods and operators)
were accepted by the apiserver and ignored.

Why kube-router, v2.1.0, firewall only:
- `sigs.k8s.io/kube-network-policies` v0.8.0 (what kind ships) was tried first, on 2026-12-05: it sends
  each new connection to userspace with an nftables `queue` expression, which this kernel lacks
  (CONFIG_NFT_QUEUE is not set).  Every rule load was refused, the table never created:
  `"syncing nftables rules" error=<conn.Receive: netlink receive: no such file or directory ...>`
  (the same ENOENT as `nft add rule ... queue num 100`: "Error: No such file or directory").
- kube-router's controller needs only iptables and ipsets (`-m set`, `-m physdev`, `-m addrtype`,
  NFLOG), which this kernel has; k3s embeds the same controller as its enforcer.  v2.1.0 is the only
  version of `github.com/cloudnativelabs/kube-router/v2` the module proxy serves.
- The security advisories reported against v2.1.0 all concern the parts that do NOT run here:
  GHSA-phqm-jgc3-qf8g (CVE-2026-32254, GO-2026-4724; fixed in v2.8.0): the service proxy
  (`--run-service-proxy`) copies any Service's externalIPs / LoadBalancer IPs into node addresses and
  IPVS services (traffic hijacking by whoever may write Services);
  GHSA-v5mh-h5hx-7v92 (GO-2026-5653; fixed in v2.9.0): the router (`--run-router`) serves GoBGP's gRPC
  admin API without authentication on <node IP>:50051 (route injection from any pod);
  GHSA-fcmh-qfxc-w685 (GO-2026-5354; no fix released): the router's BGP peer passwords, read from the
  node annotation `kube-router.io/peer.passwords`, logged at `-v=2` and above.
  Here only the firewall runs (`--run-firewall=true --run-router=false --run-service-proxy=false
  --run-loadbalancer=false`): no routing controller (so no GoBGP, nothing on 50051 or 179), no proxy,
  no BGP annotations, default verbosity.  Its health server (all interfaces, :20244) is off
  (`--health-port=0`); its metrics listen on 127.0.0.1:METRICS_PORT only.  Scanners also flag its Go
  dependencies (golang.org/x/net, docker's client); the firewall path parses no HTML and runs no daemon.

How it enforces (kube-router's design, v2.1.0):
- Jumps at the top of filter INPUT, FORWARD and OUTPUT to KUBE-ROUTER-{INPUT,FORWARD,OUTPUT}; one chain
  KUBE-POD-FW-<hash> per pod of the node (bridged traffic is seen through br_netfilter, `-m physdev`),
  one KUBE-NWPLCY-<hash> per policy, and ipsets KUBE-SRC-* / KUBE-DST-* of the peers' addresses.
  Traffic to a selected pod that no policy admits is REJECTed (a refused connection, not a time-out).
- Traffic from the node itself (`-m addrtype --src-type LOCAL`) always reaches pods: the kubelet's
  probes, Traefik (a host process: the operator's ipBlock 10.244.0.1/32 is then redundant here), the
  host's NodePorts (Kafka's host listeners), the tests' metrics scrapes.
- Pods that no policy selects keep open ingress and egress, as the API requires.
- Each full sync (about 0.1 s here, measured) saves the whole filter table (iptables-save), rewrites
  its own chains in that copy and restores the whole table (iptables-restore without --noflush).  What
  another program changed in the filter table between the save and the restore would be undone: a
  REJECT kube-proxy removed when a Service got endpoints, kafka.cut_off()'s rules of the tests.  So
  kube-router finds its `iptables-restore` in .local/etc/kube-router-path/: a wrapper written at each
  start (RESTORE_WRAPPER below) that passes on only its own chains, with --noflush: its chains
  declared (flushed) and filled, its stale chains (every sync renames its pod and policy chains)
  flushed and deleted, everything else in the table left as it is, as kube-proxy restores its own.

Identity: a client certificate CN=simplecqrs-netpol (signed here by the local CA, reissued if that CA
changed) in .local/etc/kube-router.kubeconfig, and a ClusterRole with what its informers list and watch
(it writes nothing).  `make down` stops it, then removes its chains and ipsets (it leaves them behind
on exit: its own `--cleanup-config` also tears down proxy and router state, and in v2.1.0 does not clean
the firewall's).  Log: .local/logs/kube-router.log.  Measured here: its first full sync done (ready)
0.5-1 s after its start, 57-64 MiB resident, a full sync 0.1 s with about 20 pods.
"""
from __future__ import annotations

import http.client
import os
import re
import shlex
import shutil
import subprocess
import sys

from . import commands, console, core, errors, gotools, kube, network, paths, processes

METRICS_PORT = 20245              # /metrics on 127.0.0.1 (kube-router's health port 20244 stays closed)
HOST = "127.0.0.1"
USER = "simplecqrs-netpol"        # CN of its client certificate = its RBAC user
KUBECONFIG = paths.ETC / "kube-router.kubeconfig"
FIELD_MANAGER = "simplecqrs-stack"
LABELS = {"app.kubernetes.io/managed-by": FIELD_MANAGER, "app.kubernetes.io/component": "network-policy"}
NODE_PORT_RANGE = "30000-32767"   # the apiserver's default (kube.py sets none)
SYNC_METRIC = "kube_router_controller_iptables_sync_time_count"
PATH_DIR = paths.ETC / "kube-router-path"    # first on its PATH: the iptables-restore wrapper

# Its chains (filter table) and ipsets, as pkg/controllers/netpol names them.
TOP_CHAINS = {"INPUT": "KUBE-ROUTER-INPUT", "FORWARD": "KUBE-ROUTER-FORWARD", "OUTPUT": "KUBE-ROUTER-OUTPUT"}
CHAIN_PREFIXES = ("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-")
IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-")
# Written at the end of each successful full sync (its ACCEPT of what passed the policies).
ACCEPT_MARK = "--mark 0x20000/0x20000 -j ACCEPT"

# cmd.Run starts informers on all of these, whichever controllers run, and waits for their caches;
# the firewall reads the node (GetNodeObject: `get`), pods, namespaces and policies.  It writes nothing.
RULES = [
    {"apiGroups": [""], "resources": ["pods", "namespaces", "services", "endpoints", "nodes"],
     "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["list", "watch"]},
]


# Its `iptables-restore`: the filter table's restores reduced to its own chains, applied with --noflush
# (see the docstring).  Anything else (`--help`, another table) goes to the real one unchanged.
RESTORE_WRAPPER = """#!{python} -I
# Generated by scripts/stack/netpol.py at each start of kube-router; edits are overwritten.
import subprocess, sys

REAL, IPTABLES, PREFIXES = {real!r}, {iptables!r}, {prefixes!r}
args = sys.argv[1:]
if "-T" not in args or args[args.index("-T") + 1:][:1] != ["filter"] or "--noflush" in args or "-n" in args:
    sys.exit(subprocess.run([REAL, *args]).returncode)
declared, rules = [], []
for line in sys.stdin.read().splitlines():
    words = line.split()
    if line.startswith(":") and words[0][1:].startswith(PREFIXES) and words[0][1:] not in declared:
        declared.append(words[0][1:])
    elif words[:1] in (["-A"], ["-I"]) and len(words) > 1 and words[1].startswith(PREFIXES):
        rules.append(line)      # its appends, and the inserts (-I <chain> 1) of its pod chains' first rules
listed = subprocess.run([IPTABLES, "-w", "-t", "filter", "-S"], capture_output=True, text=True, check=True).stdout
stale = [w[1] for w in map(str.split, listed.splitlines())
         if w[:1] == ["-N"] and w[1].startswith(PREFIXES) and w[1] not in declared]
text = "".join(["*filter\\n", *(f":{{c}} - [0:0]\\n" for c in declared + stale), *(r + "\\n" for r in rules),
                *(f"-X {{c}}\\n" for c in stale), "COMMIT\\n"])
sys.exit(subprocess.run([REAL, "--noflush", *args], input=text, text=True).returncode)
"""


def write_restore_wrapper() -> None:
    real = shutil.which("iptables-restore", path=os.environ.get("PATH", "").replace(str(PATH_DIR), ""))
    iptables = shutil.which("iptables")
    if real is None or iptables is None:
        raise errors.StackError("kube-router", "iptables-restore or iptables is not installed")
    PATH_DIR.mkdir(parents=True, exist_ok=True)
    wrapper = PATH_DIR / "iptables-restore"
    wrapper.write_text(RESTORE_WRAPPER.format(python=sys.executable, real=real, iptables=iptables,
                                              prefixes=CHAIN_PREFIXES))
    wrapper.chmod(0o755)


# ---------------------------------------------------------------- its iptables and ipset state
def chains() -> list[str]:
    """Its chains in the filter table (v4: it runs with IPv6 off)."""
    return [c for c in network.chains("filter") if c.startswith(CHAIN_PREFIXES)]


def ipsets() -> list[str]:
    if paths.which("ipset") is None:
        return []
    out = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True, timeout=60).stdout
    return [s for s in out.split() if s.startswith(IPSET_PREFIXES)]


def rules_installed() -> bool:
    """The jumps from the built-in chains, and the ACCEPT a completed full sync appends."""
    for builtin, chain in TOP_CHAINS.items():
        if f"-j {chain}" not in network.sh("iptables", "-w", "-t", "filter", "-S", builtin, check=False).stdout:
            return False
    return ACCEPT_MARK in network.sh("iptables", "-w", "-t", "filter", "-S", TOP_CHAINS["FORWARD"],
                                     check=False).stdout


def remove_state() -> list[str]:
    """Its chains (the jumps to them first, then every rule in them, then the chains) and its ipsets
    (only once no rule refers to them).  Safe to repeat; returns what could not be removed."""
    for builtin, chain in TOP_CHAINS.items():
        for rule in network.sh("iptables", "-w", "-t", "filter", "-S", builtin, check=False).stdout.splitlines():
            if rule.startswith("-A ") and rule.endswith(f"-j {chain}"):
                network.sh("iptables", "-w", "-t", "filter", "-D", *shlex.split(rule)[1:], check=False)
    mine = chains()
    for chain in mine:
        network.sh("iptables", "-w", "-t", "filter", "-F", chain, check=False)
    for chain in mine:
        network.sh("iptables", "-w", "-t", "filter", "-X", chain, check=False)
    for name in ipsets():
        subprocess.run(["ipset", "destroy", name], capture_output=True, timeout=60)
    return chains() + ipsets()


def _metrics() -> str:
    conn = http.client.HTTPConnection(HOST, METRICS_PORT, timeout=5)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        return body if resp.status == 200 else ""
    finally:
        conn.close()


def full_syncs() -> int:
    """How many full policy syncs it has run (its metrics); 0 before the first."""
    m = re.search(rf"^{SYNC_METRIC} (\S+)$", _metrics(), re.MULTILINE)
    return int(float(m.group(1))) if m else 0


# ---------------------------------------------------------------- component
class KubeRouter(core.Component):
    name = "kube-router"
    address = f"NetworkPolicies (iptables+ipset); metrics http://{HOST}:{METRICS_PORT}/metrics"
    start_timeout = 90
    requires = ("kubelet",)       # it reads its Node (InternalIP = the node address) at start

    def install(self) -> None:
        if paths.which("ipset") is None or paths.which("iptables-restore") is None:
            commands.run(["apt-get", "install", "-y", "--no-install-recommends", "ipset", "iptables"],
                         "installing ipset, iptables (apt)", env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        gotools.ensure("kube-router")

    def start(self) -> None:
        exe = paths.BIN / "kube-router"
        kube.prepare_host_client(self.name, exe, (METRICS_PORT,), USER, KUBECONFIG, RULES, LABELS,
                                 "/apis/networking.k8s.io/v1/networkpolicies?limit=1", FIELD_MANAGER)
        write_restore_wrapper()
        # NODE_NAME: its first lookup of the Node (else the machine's hostname, then --hostname-override).
        env = dict(os.environ, NODE_NAME=kube.NODE_NAME, PATH=f"{PATH_DIR}:{os.environ.get('PATH', '')}")
        processes.spawn(self.name, [
            str(exe),
            f"--kubeconfig={KUBECONFIG}",
            f"--hostname-override={kube.NODE_NAME}",
            "--run-firewall=true", "--run-router=false", "--run-service-proxy=false", "--run-loadbalancer=false",
            f"--service-cluster-ip-range={kube.SERVICE_CIDR}",
            f"--service-node-port-range={NODE_PORT_RANGE}",
            "--enable-ipv4=true", "--enable-ipv6=false",
            "--health-port=0",                       # else a health server on every interface
            f"--metrics-addr={HOST}", f"--metrics-port={METRICS_PORT}",
        ], env=env, cwd=paths.ETC)

    def ready(self) -> bool:
        # running(): the metrics answering could be another kube-router's (a start that lost the port).
        return self.running() and full_syncs() >= 1 and rules_installed()

    def stop(self) -> None:
        processes.stop(self.name)
        if left := remove_state():   # said, not raised: `make down` goes on with the other components
            console.detail(f"{self.name}: could not remove {', '.join(left[:5])}{' ...' if len(left) > 5 else ''}")

    def version(self) -> str:
        exe = paths.BIN / "kube-router"
        if not exe.exists():
            return gotools.KUBE_ROUTER_VERSION
        try:   # on stderr: "Running /path/kube-router version v2.1.0, built on ..., go1.26.8"
            out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=10).stderr
        except (OSError, subprocess.SubprocessError):
            return gotools.KUBE_ROUTER_VERSION
        m = re.search(r"version (v\S+?),", out)
        return f"{m.group(1)} (firewall only)" if m else gotools.KUBE_ROUTER_VERSION
