"""Apache Kafka as a plain local process: one KRaft node (broker + controller) on 127.0.0.1:9092.

The jars come from Maven Central (scripts/maven/kafka/pom.xml lists them; no
release tarball is needed) and are copied once into CACHE/kafka-<version>/lib.
Configuration is generated into .local/etc/kafka, data lives in
.local/data/kafka, all logging goes to .local/logs/kafka.log.

Topics are NOT auto-created (auto.create.topics.enable=false): whoever needs a
topic creates it explicitly (admin client), as in a real deployment.

Listeners: PLAINTEXT 127.0.0.1:9092 (host tools, tests), PODS GATEWAY:9094 (plaintext, for pods),
SCRAM GATEWAY:9095 (SASL_PLAINTEXT, SCRAM-SHA-512: the users Strimzi's User Operator makes, and
its admin `strimzi-admin`, a super user whose password is drawn once per checkout into
.local/etc/credentials.env).  ACLs are enforced (StandardAuthorizer) but a resource without any
ACL stays open to everyone (see SERVER_PROPERTIES).
Standard library only.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path

from . import core, network
from .credentials import credentials
from .kafkaping import metadata

VERSION = "4.1.1"
PORT = 9092                 # PLAINTEXT listener (clients)
CONTROLLER_PORT = 9093      # KRaft controller listener
POD_PORT = network.KAFKA_POD_PORT  # PODS listener: the broker as pods on the local node reach it
SCRAM_PORT = network.KAFKA_SCRAM_POD_PORT  # SCRAM listener: SASL_PLAINTEXT, SCRAM-SHA-512
POD_BOOTSTRAP = f"{network.GATEWAY}:{POD_PORT}"
SCRAM_BOOTSTRAP = f"{network.GATEWAY}:{SCRAM_PORT}"  # reachable from pods and from the host
SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 4096            # Kafka's minimum for SCRAM-SHA-512; as Strimzi's User Operator sets
NODE_ID = 1

POM = core.ROOT / "scripts" / "maven" / "kafka" / "pom.xml"
HOME = core.CACHE / f"kafka-{VERSION}"
LIB = HOME / "lib"
CONF = core.ETC / "kafka"
DATADIR = core.DATA / "kafka"
LOG_DIRS = DATADIR / "logs"          # Kafka's "log.dirs": the partition data
CLUSTER_ID_FILE = DATADIR / "cluster.id"


def java() -> str:
    return str(core.JAVA17_HOME / "bin" / "java")


def install_jars(component: str, pom: Path, home: Path) -> None:
    """Copy the runtime jars `pom` depends on into home/lib with Maven (idempotent).

    A marker holding the pom's hash makes reruns free and a changed pom re-copy.
    Maven's own ~/.m2 cache makes a re-copy cheap.  Shared with cassandra.py.
    """
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    marker = home / ".installed"
    if marker.exists() and marker.read_text().strip() == digest and (home / "lib").is_dir():
        return
    if not core.which("mvn"):
        core.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven",
                 f"{component} apt-get install maven", shell=True)
    tmp = home / "lib.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = dict(os.environ, JAVA_HOME=str(core.JAVA17_HOME))
    core.run(["mvn", "-B", "--no-transfer-progress", "-f", str(pom), "dependency:copy-dependencies",
              "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
             f"{component} jars from Maven Central", env=env,
             log=core.LOGS / f"install-{component.lower()}.log")
    lib = home / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    for old in home.glob("*.jsa"):      # class-data archives of the old jars
        old.unlink()
    marker.write_text(digest + "\n")


def cds_flags(name: str, home: Path) -> list[str]:
    """Application class-data sharing, to start the JVM faster (Kafka 4.5 -> 3 s, Cassandra 4.5 -> 3.5 s).

    The first run records every class it loaded into an archive when it exits
    (on `stop`, which then takes a few seconds longer); later runs map that
    archive instead of parsing the jars again.  The archive belongs to one JDK
    build and one classpath: install_jars() drops it when the jars change, and
    the JDK version is part of its name.  A JVM that finds it unusable warns
    and runs without it.  The classpath must hold jars only (no directories).
    """
    try:
        jdk = re.search(r'JAVA_RUNTIME_VERSION="([^"]+)"', (core.JAVA17_HOME / "release").read_text()).group(1)
    except (OSError, AttributeError):
        return []
    archive = home / f"{name}-jdk{jdk}.jsa"
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}"]
    # (-Xlog: the dump warns about every class it cannot store: old class files, generated classes)
    return [f"-XX:ArchiveClassesAtExit={archive}", "-Xlog:cds=error,cds+dynamic=error"]


def _cluster_id() -> str:
    """The KRaft cluster id, drawn once and kept beside the data (as Uuid.randomUuid does:
    URL-safe base64 of 16 random bytes, no padding, never starting with '-')."""
    if CLUSTER_ID_FILE.exists():
        return CLUSTER_ID_FILE.read_text().strip()
    cid = "-"
    while cid.startswith("-"):
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    DATADIR.mkdir(parents=True, exist_ok=True)
    CLUSTER_ID_FILE.write_text(cid + "\n")
    return cid


SERVER_PROPERTIES = """\
# Generated by scripts/stack/kafka.py on every start; edit that file instead.
# One KRaft node acting as broker and controller, static quorum of itself.
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={node_id}@127.0.0.1:{cport}
# PODS: the same broker for pods on the local node.  It listens on loopback too; the node's
# network (network.py) forwards {pod_host}:{pod_port} from the pod bridge to it, and clients in pods
# are told to come back to that address (127.0.0.1 would be their own loopback).  Host processes
# reach that address as well (network.py DNATs their connections to it).
# SCRAM: the same again on {pod_host}:{scram_port}, with SASL SCRAM-SHA-512 authentication: the
# credentials of KafkaUsers (Strimzi's User Operator) and of the operators' admin user.
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport},PODS://127.0.0.1:{pod_port},SCRAM://127.0.0.1:{scram_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},PODS://{pod_host}:{pod_port},SCRAM://{pod_host}:{scram_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PODS:PLAINTEXT,SCRAM:SASL_PLAINTEXT
listener.name.scram.sasl.enabled.mechanisms={scram_mechanism}
listener.name.scram.{scram_mechanism_lower}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs={log_dirs}

# ACLs are enforced, as on a Strimzi cluster with `authorization: simple`, with one difference:
# a resource without any ACL is open to every principal (allow.everyone.if.no.acl.found).  The one
# local broker is shared by the tests' many instances, most of which use no users at all (PLAINTEXT,
# principal User:ANONYMOUS); a topic or group that a KafkaUser has ACLs on is closed to every other
# principal, ANONYMOUS included.  The operators' admin user is a super user.
# The broker's own traffic (controller and inter-broker listeners: PLAINTEXT, so User:ANONYMOUS)
# needs ClusterAction on the Cluster resource.  Left to allow.everyone.if.no.acl.found, it would
# stop the moment any ACL exists on the Cluster resource (e.g. a KafkaUser's `type: cluster` rule):
# so ensure_scram_admin() grants User:ANONYMOUS All on the Cluster resource explicitly, at every
# start.  That also keeps plaintext clients' cluster-level operations (creating topics, ACLs, SCRAM
# users...) as they were before ACLs were enforced; Cluster ACLs imply nothing on topics or groups.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true
super.users=User:{scram_admin}

# Topics are created explicitly by whoever owns them.
auto.create.topics.enable=false
num.partitions=1

# Single node: every internal topic has one replica, and few partitions
# (the defaults of 50 make the first consumer group / transaction slow to start).
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1

# Consumers join a group at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0

# Fewer threads than the defaults (3 network, 8 I/O): this machine has 2 cores.
num.network.threads=2
num.io.threads=4
"""

LOG4J2_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/stack/kafka.py. Everything goes to stdout, which the
     harness appends to .local/logs/kafka.log. -->
<Configuration status="warn">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="stdout"/></Root>
    <!-- chatty at INFO: per-partition state changes, request log, client configs -->
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <Logger name="org.apache.kafka.common.config" level="WARN"/>
  </Loggers>
</Configuration>
"""


class Kafka(core.Component):
    name = "kafka"
    address = f"127.0.0.1:{PORT}"
    start_timeout = 120

    def install(self) -> None:
        install_jars("Kafka", POM, HOME)

    def _jvm(self, heap: str) -> list[str]:
        return [
            java(), f"-Xms{heap}", f"-Xmx{heap}",
            # kafka-run-class.sh's GC settings
            "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true",
            # keep everything under .local: no /tmp/hsperfdata, native libs (zstd, snappy) unpacked here
            "-XX:+PerfDisableSharedMem", f"-Djava.io.tmpdir={DATADIR / 'tmp'}",
            f"-Dlog4j2.configurationFile={CONF / 'log4j2.xml'}",
            "-cp", str(LIB / "*"),
        ]

    def start(self) -> None:
        core.require_ports_free(self.name, PORT, CONTROLLER_PORT, POD_PORT, SCRAM_PORT)
        if not LIB.is_dir():
            raise core.StackError(self.name, "not installed (run install first)")
        CONF.mkdir(parents=True, exist_ok=True)
        (DATADIR / "tmp").mkdir(parents=True, exist_ok=True)
        props = CONF / "server.properties"
        props.write_text(SERVER_PROPERTIES.format(
            node_id=NODE_ID, port=PORT, cport=CONTROLLER_PORT, pod_port=POD_PORT, pod_host=network.GATEWAY,
            scram_port=SCRAM_PORT, scram_mechanism=SCRAM_MECHANISM, scram_mechanism_lower=SCRAM_MECHANISM.lower(),
            scram_admin=scram_admin()[0], log_dirs=LOG_DIRS))
        (CONF / "log4j2.xml").write_text(LOG4J2_XML)
        if not (LOG_DIRS / "meta.properties").exists():
            # Once per data directory: write meta.properties and the bootstrap checkpoint.
            # (Static voters, so no --standalone; -g makes a rerun harmless.)
            core.run(self._jvm("256m") + ["kafka.tools.StorageTool", "format", "-g",
                                          "-t", _cluster_id(), "-c", str(props)],
                     "Kafka format storage", log=self.log, timeout=120)
        argv = self._jvm("512m")
        argv[1:1] = cds_flags(self.name, HOME)
        core.spawn(self.name, argv + ["kafka.Kafka", str(props)], cwd=DATADIR)

    def wait_ready(self) -> None:
        super().wait_ready()
        ensure_scram_admin()

    def ready(self) -> bool:
        # A Metadata request: answered with our broker only once it has registered
        # with the controller and is serving the data plane.
        md = metadata("127.0.0.1", PORT, timeout=3)
        return any(port == PORT for _node, _host, port in md["brokers"])

    def version(self) -> str:
        return VERSION

    def stop(self) -> None:
        # Controlled shutdown of a combined node takes a few seconds; give it time before SIGKILL.
        core.stop(self.name, timeout=60)


# ---------------------------------------------------------------- SCRAM admin and the ANONYMOUS grant
def scram_admin() -> tuple[str, str]:
    """(username, password) of the SCRAM super user Strimzi's operators use (generated once per
    checkout into .local/etc/credentials.env, mode 0600)."""
    creds = credentials()
    return creds["KAFKA_SCRAM_ADMIN_USER"], creds["KAFKA_SCRAM_ADMIN_PASSWORD"]


def ensure_scram_admin() -> None:
    """Grant User:ANONYMOUS All on the Cluster resource and set the admin's SCRAM credential.
    The broker must be answering.  Both are idempotent and cost two requests, so they are made on
    every start rather than once: whatever removed them (a test cleaning up, a sweep of users
    without a KafkaUser) is undone by the next `make up`.  kafka-python's admin client (the
    project's Kafka client; imported here because `make down` and `status` run without the venv)
    sends them on the PLAINTEXT listener, and salts the password itself: it never leaves this
    process in clear (no command line, no log)."""
    from kafka import KafkaAdminClient
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ResourcePattern, ResourceType, UserScramCredentialUpsertion

    user, password = scram_admin()
    if not core.port_open(SCRAM_PORT):
        raise core.StackError("kafka", f"no SCRAM listener on 127.0.0.1:{SCRAM_PORT}: the running broker was "
                                       "started with an older configuration; restart it (`make down`, `make up`)")
    admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{PORT}", client_id="simplecqrs-stack",
                             request_timeout_ms=15000)
    try:
        # First the grant: creating an ACL needs Alter on the Cluster resource, which ANONYMOUS has
        # only while no ACL exists on it (the first start) or once granted.
        done = admin.create_acls([ACL("User:ANONYMOUS", "*", ACLOperation.ALL, ACLPermissionType.ALLOW,
                                      ResourcePattern(ResourceType.CLUSTER, "kafka-cluster"))])
        if done["failed"]:
            raise core.StackError("kafka", f"granting User:ANONYMOUS on the cluster: {done['failed'][0]}")
        errors = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
            user, SCRAM_MECHANISM, password, iterations=SCRAM_ITERATIONS)])
        if errors.get(user):
            raise core.StackError("kafka", f"setting the SCRAM credential of {user}: {errors[user]}")
    finally:
        admin.close()
