"""Cassandra connection setup (cassandra-driver), shared by the query API, the
consumer, the operator and the scripts.

* libev reactor (Python 3.12+ has no asyncore); asyncio as a fallback.
* Token-aware, DC-aware load balancing pinned to CASSANDRA_LOCAL_DC.
* Our writes are idempotent by construction (USING TIMESTAMP = event
  sequence), so statements are marked idempotent and the driver may retry them.
"""
from __future__ import annotations

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from ..config import CassandraSettings

try:  # compiled into the cassandra-driver wheel
    from cassandra.io.libevreactor import LibevConnection as _Connection
except ImportError:  # pragma: no cover
    from cassandra.io.asyncioreactor import AsyncioConnection as _Connection


def cluster(s: CassandraSettings, *, request_timeout: float = 10.0) -> Cluster:
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=s.local_dc)),
        request_timeout=request_timeout,
    )
    auth = PlainTextAuthProvider(s.username, s.password) if s.username else None
    return Cluster(
        contact_points=s.hosts, port=s.port, auth_provider=auth, connection_class=_Connection,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile}, protocol_version=5,
        connect_timeout=5, control_connection_timeout=5, idle_heartbeat_interval=10,
        # No frame compression: our requests and rows are a few hundred bytes, where LZ4 saves no bytes
        # worth its CPU on either side (the consumer's and Cassandra's; README, Performance).
        compression=False,
    )


def connect(s: CassandraSettings, *, keyspace: bool = True, request_timeout: float = 10.0) -> Session:
    c = cluster(s, request_timeout=request_timeout)
    return c.connect(s.keyspace if keyspace else None)
