"""A Kafka protocol Metadata request over a raw socket (standard library only).

Used as the readiness probe of the local broker: it answers only once the
broker has registered with the controller and is serving metadata, which an
open port alone does not tell.

Why not the driver in .venv: scripts/stack runs under the system Python as well (`make status`,
`make down`, and `make up` before .venv exists is the bootstrap that creates it), so it imports
nothing outside the standard library; a readiness probe needs this one request only.

    python3 -m scripts.stack.kafkaping [host:port]
"""
from __future__ import annotations

import socket
import struct
import sys

from .core import recv_exact

METADATA = 3      # api key
VERSION = 4       # Kafka 4.0 removed Metadata v0-v3 (KIP-896); v4 is the last non-"flexible" one


def _string(b: bytes, i: int) -> tuple[str | None, int]:
    (n,) = struct.unpack_from(">h", b, i)
    i += 2
    if n < 0:
        return None, i
    return b[i:i + n].decode(), i + n


def metadata(host: str = "127.0.0.1", port: int = 9092, timeout: float = 5) -> dict:
    """Return {"cluster_id", "controller_id", "brokers": [(node_id, host, port)]}."""
    client_id = b"simplecqrs-ping"
    # Request header v1: api_key, api_version, correlation_id, client_id (int16 string)
    header = struct.pack(">hhih", METADATA, VERSION, 1, len(client_id)) + client_id
    # Body v4: topics = empty array (ask for no topics), allow_auto_topic_creation = false
    body = struct.pack(">i?", 0, False)
    msg = header + body
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(msg)) + msg)
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        b = recv_exact(s, size)
    # Response header v0: correlation_id; body v4: throttle_time_ms, brokers[], cluster_id, controller_id, topics[]
    corr, _throttle, n = struct.unpack_from(">iii", b, 0)
    if corr != 1:
        raise ValueError(f"unexpected correlation id {corr}")
    i = 12
    brokers = []
    for _ in range(n):
        (node_id,) = struct.unpack_from(">i", b, i)
        bhost, i = _string(b, i + 4)
        (bport,) = struct.unpack_from(">i", b, i)
        _rack, i = _string(b, i + 4)
        brokers.append((node_id, bhost, bport))
    cluster_id, i = _string(b, i)
    (controller_id,) = struct.unpack_from(">i", b, i)
    return {"cluster_id": cluster_id, "controller_id": controller_id, "brokers": brokers}


if __name__ == "__main__":
    h, _, p = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092").rpartition(":")
    print(metadata(h or "127.0.0.1", int(p)))
