"""Where the local stack's parts listen and how pods reach them: the addresses and ports more than
one module needs (the rest stay with their component).  A leaf: it imports nothing of the stack,
so the network, the control plane and the stores all take their addresses from here.

Everything listens on 127.0.0.1; pods reach the host's stores and the apiserver at GATEWAY, the
pod bridge's host address, through the DNAT rules of network.py.
"""
from __future__ import annotations

import os

# The pod network (network.py): the bridge, its subnet, its host side.
BRIDGE = "simplecqrs0"
POD_CIDR = "10.244.0.0/24"
PREFIX = 24
GATEWAY = "10.244.0.1"            # the bridge's host address: the node IP, pods' default route
# A pod's connection to a host store at GATEWAY, as the NetworkPolicy enforcer sees it: the DNAT
# has made it 127.0.0.1 by then (an instance admits it with networkPolicy.egressCIDRs).
STORES_SEEN_BY_POLICY = "127.0.0.1/32"

# Services (kube-proxy programs them): the range, the `kubernetes` Service, the cluster DNS.
SERVICE_CIDR = "10.0.0.0/24"      # first address, 10.0.0.1, is the `kubernetes` Service
KUBERNETES_SERVICE_IP = "10.0.0.1"
CLUSTER_DNS = "10.0.0.10"         # CoreDNS's Service address

# Host listeners that pods reach too (network.host_forwards).
APISERVER_PORT = 6443
MYSQL_PORT = int(os.environ.get("MYSQL_PORT", "3306"))   # the chosen write store (writestore.py)
MYSQL_SECOND_PORT = 3307                                   # the other one, for the tests on both
CASSANDRA_PORT = 9042                                      # CQL native protocol
