"""Entrypoint of the development Cassandra image (dev-stores.Dockerfile).

The image holds Cassandra's jars in /opt/cassandra/lib and, in /etc/cassandra, the
configuration scripts/stack/cassandra.py generates for the host node (cassandra.yaml,
logback.xml) plus jvm.options (its JVM flags, one per line).  On every start this fills in
$CASSANDRA_CONF/cassandra.yaml (default /etc/cassandra, which may be read-only: the chart copies
it to a writable emptyDir and points CASSANDRA_CONF there) from the environment, the variables
the official image reads:

  CASSANDRA_LISTEN_ADDRESS   default: this pod's address (its hostname's)
  CASSANDRA_SEEDS            default: the listen address (a single node)
  CASSANDRA_CLUSTER_NAME, CASSANDRA_NUM_TOKENS, CASSANDRA_ENDPOINT_SNITCH
  CASSANDRA_DC, CASSANDRA_RACK  (cassandra-rackdc.properties, for GossipingPropertyFileSnitch)
  MAX_HEAP_SIZE (default 1G), HEAP_NEWSIZE

then execs the JVM (PID 1: SIGTERM reaches Cassandra, which drains).  CQL on 0.0.0.0:9042.
"""
from __future__ import annotations

import os
import re
import socket
from pathlib import Path

LIB = "/opt/cassandra/lib"
DATA = "/var/lib/cassandra"
LOGS = "/var/log/cassandra"
STORAGE_PORT = 7000


def set_key(yaml: str, key: str, value: str) -> str:
    """Replace the top-level `key:` line (the generated file has each once)."""
    new, n = re.subn(rf"(?m)^{re.escape(key)}:.*$", f"{key}: {value}", yaml)
    return new if n else yaml + f"\n{key}: {value}\n"


def main() -> None:
    conf = Path(os.environ.get("CASSANDRA_CONF", "/etc/cassandra"))
    address = os.environ.get("CASSANDRA_LISTEN_ADDRESS") or socket.gethostbyname(socket.gethostname())
    seeds = os.environ.get("CASSANDRA_SEEDS") or address
    tokens = os.environ.get("CASSANDRA_NUM_TOKENS", "16")

    yaml = (conf / "cassandra.yaml").read_text()
    yaml = re.sub(r'(?m)^(\s*- seeds:).*$', rf'\1 "{seeds}:{STORAGE_PORT}"' if ":" not in seeds
                  else rf'\1 "{seeds}"', yaml)
    for key, value in (("cluster_name", os.environ.get("CASSANDRA_CLUSTER_NAME", "simplecqrs")),
                       ("num_tokens", tokens),
                       ("endpoint_snitch", os.environ.get("CASSANDRA_ENDPOINT_SNITCH", "SimpleSnitch")),
                       ("listen_address", address),
                       ("rpc_address", "0.0.0.0"),
                       ("broadcast_rpc_address", address)):
        yaml = set_key(yaml, key, value)
    if tokens != "1":                # initial_token is for a one-token node only
        yaml = re.sub(r"(?m)^initial_token:.*\n", "", yaml)
    (conf / "cassandra.yaml").write_text(yaml)
    (conf / "cassandra-rackdc.properties").write_text(
        f"dc={os.environ.get('CASSANDRA_DC', 'datacenter1')}\nrack={os.environ.get('CASSANDRA_RACK', 'rack1')}\n")

    heap = os.environ.get("MAX_HEAP_SIZE", "1G")
    argv = ["java", f"-Xms{heap}", f"-Xmx{heap}"]
    if os.environ.get("HEAP_NEWSIZE"):
        argv.append(f"-Xmn{os.environ['HEAP_NEWSIZE']}")
    argv += [line.strip() for line in (Path("/etc/cassandra/jvm.options").read_text().splitlines())
             if line.strip() and not line.startswith("#")]
    argv += [
        "-Djava.io.tmpdir=/tmp", "-Djna.tmpdir=/tmp",   # native libraries unpacked into the emptyDir
        f"-Dcassandra.config={(conf / 'cassandra.yaml').as_uri()}",
        f"-Dcassandra-rackdc.properties={(conf / 'cassandra-rackdc.properties').as_uri()}",
        f"-Dlogback.configurationFile={conf / 'logback.xml'}",
        f"-Dcassandra.storagedir={DATA}",
        f"-Dcassandra.logdir={LOGS}",
        "-cp", f"{LIB}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]
    os.environ.setdefault("MALLOC_ARENA_MAX", "4")   # as cassandra-env.sh
    print(f"cassandra: listen {address}, seeds {seeds}, {tokens} tokens, heap {heap}", flush=True)
    os.execvp("java", argv)


if __name__ == "__main__":
    main()
