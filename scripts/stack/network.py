"""The local node's network: a pod bridge, and the paths from pods to what runs on the host.

Pods live on the bridge `simplecqrs0` (10.244.0.0/24, host side 10.244.0.1); Services on
10.0.0.0/24 (kube.SERVICE_CIDR; kube-proxy programs them).  Neither range is used by anything else
on the machine, and neither is reachable from outside it: the bridge has no uplink, and the node's
own listeners (kubelet) bind the bridge address, never a public interface.

The stores and the apiserver listen on 127.0.0.1 only.  Pods reach them at the bridge address
(GATEWAY:3306, :9042; the apiserver as the `kubernetes` Service 10.0.0.1:443) through DNAT rules to
127.0.0.1, which the kernel allows for packets that arrive on the bridge once `route_localnet` is set
on it (kube-proxy uses the same switch for NodePorts on localhost).  So nothing is bound to a new
address and nothing is opened to the world.  Kafka runs as pods (kafka.py): the host reaches it
through NodePorts on 127.0.0.1 and GATEWAY, which kube-proxy programs.

`make down` removes what `start` made: the rules (in chains of our own), the bridge, and
restores net.ipv4.ip_forward.
"""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from . import console, core, errors, paths
from .addresses import (  # noqa: F401 - the network's addresses, by their network.* names too
    APISERVER_PORT,
    BRIDGE,
    CASSANDRA_PORT,
    CLUSTER_DNS,
    GATEWAY,
    KUBERNETES_SERVICE_IP,
    MYSQL_PORT,
    POD_CIDR,
    PREFIX,
    STORES_SEEN_BY_POLICY,
)

NAT_CHAIN = "SIMPLECQRS-TO-HOST"  # DNAT from the bridge to host loopback services
OUTPUT_CHAIN = "SIMPLECQRS-HOST-OUT"  # left by older versions (Kafka was a host process): removed
COMMENT = "simplecqrs local node"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
IP_FORWARD_SAVED = paths.RUN / "ip_forward.before"


def host_forwards() -> list[tuple[str, int, int]]:
    """(destination address, destination port, port on 127.0.0.1) for every path pods -> host."""
    return [(GATEWAY, MYSQL_PORT, MYSQL_PORT), (GATEWAY, CASSANDRA_PORT, CASSANDRA_PORT),
            # the `kubernetes` Service (first address of the Service range) -> the apiserver
            (KUBERNETES_SERVICE_IP, 443, APISERVER_PORT)]


def _chains() -> list[tuple[str, list[str], list[tuple[str, int, int]]]]:
    """(chain, the nat rule that jumps to it, its DNAT forwards): packets from pods arriving on the
    bridge (PREROUTING)."""
    return [(NAT_CHAIN, ["PREROUTING", "-i", BRIDGE, "-m", "comment", "--comment", COMMENT, "-j", NAT_CHAIN],
             host_forwards())]


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and out.returncode != 0:
        raise errors.StackError("node-network", f"{' '.join(argv)}: {out.stderr.strip()[-300:]}")
    return out


def chain_exists(table: str, chain: str, tool: str = "iptables") -> bool:
    return sh(tool, "-w", "-t", table, "-S", chain, check=False).returncode == 0


def chains(table: str, tool: str = "iptables") -> list[str]:
    return [line.split()[1] for line in sh(tool, "-w", "-t", table, "-S", check=False).stdout.splitlines()
            if line.startswith("-N ")]


def delete_chain(table: str, chain: str, tool: str = "iptables") -> None:
    """Remove every rule that jumps to `chain`, then the chain itself (if there)."""
    if not chain_exists(table, chain, tool):
        return
    for rule in sh(tool, "-w", "-t", table, "-S", check=False).stdout.splitlines():
        words = shlex.split(rule)
        if words[:1] == ["-A"] and "-j" in words and words[words.index("-j") + 1] == chain:
            sh(tool, "-w", "-t", table, "-D", *words[1:], check=False)
    sh(tool, "-w", "-t", table, "-F", chain, check=False)
    sh(tool, "-w", "-t", table, "-X", chain, check=False)


def bridge_exists() -> bool:
    return Path(f"/sys/class/net/{BRIDGE}").exists()


class NodeNetwork(core.Component):
    """Not a process: the bridge, the sysctls and the DNAT rules the node's pods need."""

    name = "node-network"
    address = f"{BRIDGE} {GATEWAY}/{PREFIX}"
    start_timeout = 10
    process = False

    def running(self) -> bool:
        return bridge_exists()

    def start(self) -> None:
        if not bridge_exists():
            sh("ip", "link", "add", BRIDGE, "type", "bridge")
        if f"{GATEWAY}/{PREFIX}" not in sh("ip", "-4", "-o", "addr", "show", "dev", BRIDGE).stdout:
            sh("ip", "addr", "add", f"{GATEWAY}/{PREFIX}", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet").write_text("1\n")
        # Pods' traffic to other networks (CoreDNS's upstream, package mirrors) is routed by the host.
        if not IP_FORWARD_SAVED.exists():
            IP_FORWARD_SAVED.write_text(IP_FORWARD.read_text())
        IP_FORWARD.write_text("1\n")
        delete_chain("nat", OUTPUT_CHAIN)
        for chain, jump, forwards in _chains():
            if not chain_exists("nat", chain):
                sh("iptables", "-w", "-t", "nat", "-N", chain)
            sh("iptables", "-w", "-t", "nat", "-F", chain)
            for dest, port, local_port in forwards:
                sh("iptables", "-w", "-t", "nat", "-A", chain, "-d", dest, "-p", "tcp", "--dport", str(port),
                   "-m", "comment", "--comment", COMMENT, "-j", "DNAT", "--to-destination", f"127.0.0.1:{local_port}")
            if sh("iptables", "-w", "-t", "nat", "-C", *jump, check=False).returncode != 0:
                sh("iptables", "-w", "-t", "nat", "-I", *jump)

    def ready(self) -> bool:
        return bridge_exists() and self._rules_complete()

    def _rules_complete(self) -> bool:
        """Every jump and DNAT rule is there (a node network set up by an older version of this file
        lacks some: up() then programs them again)."""
        for chain, jump, forwards in _chains():
            if sh("iptables", "-w", "-t", "nat", "-C", *jump, check=False).returncode != 0:
                return False
            have = sh("iptables", "-w", "-t", "nat", "-S", chain, check=False).stdout
            for dest, port, local_port in forwards:
                if not any(f"-d {dest}/32 " in line and f"--dport {port} " in line
                           and f"--to-destination 127.0.0.1:{local_port}" in line for line in have.splitlines()):
                    return False
        return True

    def up(self) -> None:
        # As core.Component.up(), except that a running network missing rules is set up again
        # (start() is idempotent) instead of waited for.
        if self.running() and self._ready_quietly():
            console.detail(f"{self.name} answering on {self.address}")
            return
        console.say(f"{'updating' if self.running() else 'starting'} {self.name}")
        self.start()
        self.wait_ready()

    def stop(self) -> None:
        delete_chain("nat", OUTPUT_CHAIN)
        delete_chain("nat", NAT_CHAIN)
        if bridge_exists():
            sh("ip", "link", "delete", BRIDGE, check=False)
        if IP_FORWARD_SAVED.exists():
            IP_FORWARD.write_text(IP_FORWARD_SAVED.read_text())
            IP_FORWARD_SAVED.unlink()

    def status(self) -> core.Status:
        s = super().status()
        s.log = "-"
        return s

    def version(self) -> str:
        return "bridge+iptables"
