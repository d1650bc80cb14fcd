"""Tenant isolation's pure parts: where a Secret may be sent, and the client that never sends a
password in clear text.  (The attacks themselves run on the node: tests/test_tenants.py.)"""
from __future__ import annotations

import socket
import struct
import threading

import pytest
from simplecqrs_operator.addresses import canonical_host, registry
from simplecqrs_operator.credentials import refused_destinations

from app.config import MySQLSettings
from app.writemodel import db


@pytest.mark.parametrize(("host", "canonical"), [
    ("mysql", "mysql.shop.svc.cluster.local"),
    ("MySQL.db", "mysql.db.svc.cluster.local"),
    ("mysql.db.svc", "mysql.db.svc.cluster.local"),
    ("mysql.db.svc.cluster.local.", "mysql.db.svc.cluster.local"),
    ("mysql.db.svc:3306", "mysql.db.svc.cluster.local"),
    ("db.example.com", "db.example.com"),
    ("10.244.0.1", "10.244.0.1"),
    ("[::1]", "::1"),
])
def test_hosts_compare_as_a_pod_in_the_namespace_resolves_them(host, canonical):
    assert canonical_host(host, "shop") == canonical


def test_a_secret_goes_only_where_its_annotation_says():
    secret = {"metadata": {"name": "admin", "annotations": {"simplecqrs.io/allowed-hosts": "mysql, 10.0.0.5"}}}
    assert refused_destinations(secret, "shop", ["mysql.shop.svc"]) == ""
    assert refused_destinations(secret, "shop", ["mysql.shop.svc.cluster.local", "10.0.0.5"]) == ""
    why = refused_destinations(secret, "shop", ["mysql.other.svc"])
    assert "may be sent to" in why and "mysql.other.svc" in why
    unannotated = refused_destinations({"metadata": {"name": "admin"}}, "shop", ["mysql"])
    assert "simplecqrs.io/allowed-hosts=mysql" in unannotated


def test_a_password_goes_over_an_unverified_connection_only_if_its_secrets_owner_accepts_it():
    from simplecqrs_operator.credentials import mysql_unverified, refused_transport
    from simplecqrs_operator.resource import OrderService
    from test_operator_units import body

    plain = {"metadata": {"name": "admin"}}
    accepted = {"metadata": {"name": "admin", "annotations": {"simplecqrs.io/unverified-transport": "true"}}}
    why = refused_transport(plain, ["mysql"], "no CA")
    assert "simplecqrs.io/unverified-transport=true" in why and "mysql" in why and "no CA" in why
    assert refused_transport(accepted, ["mysql"], "no CA") == ""
    # MySQL verifies the server with a CA (VERIFY_CA by default then) or a VERIFY_* mode; not otherwise.
    for tls, verified in (({}, False), ({"mode": "REQUIRED"}, False), ({"mode": "PREFERRED"}, False),
                          ({"caSecretRef": {"name": "ca"}}, True), ({"mode": "VERIFY_IDENTITY"}, True),
                          ({"mode": "VERIFY_CA", "caSecretRef": {"name": "ca"}}, True)):
        o = OrderService.from_body(body(mysql__tls=tls))
        assert o.mysql.verifies_server is verified, tls
        assert (mysql_unverified(o) == "") is verified


@pytest.mark.parametrize(("image", "host"), [
    ("simplecqrs:dev", "docker.io"), ("library/python:3", "docker.io"), ("ghcr.io/a/b:1", "ghcr.io"),
    ("localhost:5000/x", "localhost:5000"), ("registry.local/x@sha256:ab", "registry.local")])
def test_a_pull_secret_is_checked_against_the_images_registry(image, host):
    assert registry(image) == host


def test_the_operators_installer_may_limit_the_registries_images_come_from():
    from simplecqrs_operator.addresses import refused_images

    images = ["simplecqrs:dev", "registry.example.com/team/simplecqrs:1", "evil.example.net/miner:latest"]
    assert refused_images(images, ()) == []
    assert refused_images(images, ("registry.example.com", "docker.io")) == ["evil.example.net/miner:latest"]


def _packet(seq: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def test_the_client_never_answers_a_clear_text_password_request():
    """A server (the one a changed `mysql.host` points at) that asks to switch to
    mysql_clear_password gets a refusal, never the password."""
    password = "s3cret-admin-password"
    listener = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def serve():
        conn, _ = listener.accept()
        with conn:
            caps = 0x1 | 0x200 | 0x8000 | 0x80000          # long password, 4.1, secure connection, plugin auth
            scramble = b"abcdefghijklmnopqrst"
            greeting = (b"\x0a" + b"8.0.0-evil\0" + struct.pack("<I", 7) + scramble[:8] + b"\0"
                        + struct.pack("<H", caps & 0xFFFF) + b"\x2d" + struct.pack("<H", 2)
                        + struct.pack("<H", caps >> 16) + bytes([21]) + b"\0" * 10 + scramble[8:] + b"\0"
                        + b"mysql_native_password\0")
            conn.sendall(_packet(0, greeting))
            conn.settimeout(5)
            received.extend(conn.recv(65536))                     # the handshake response
            conn.sendall(_packet(2, b"\xfe" + b"mysql_clear_password\0"))
            try:
                while chunk := conn.recv(65536):
                    received.extend(chunk)
            except OSError:
                pass

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    settings = MySQLSettings(host="127.0.0.1", port=listener.getsockname()[1], database="x", user="admin",
                             password=password, ssl_mode="DISABLED")
    with pytest.raises(Exception, match="clear text"):
        db.connect(settings, database=None)
    server.join(10)
    listener.close()
    assert received and password.encode() not in received


def test_a_shared_kafka_clusters_names_are_claimed_only_as_granted():
    from simplecqrs_operator import ownership
    from simplecqrs_operator.resource import OrderService

    from scripts.stack import kafka as stack_kafka

    assert stack_kafka.GRANTS == ownership.KAFKA_GRANTS

    def osvc(topic: str, group: str, kafka_ns: str = "kafka") -> OrderService:
        return OrderService.from_body({"metadata": {"name": "shop", "namespace": "team-a", "uid": "u"}, "spec": {
            "kafka": {"bootstrapServers": "k:9092", "topic": topic, "partitions": 3, "replicationFactor": 1,
                      "consumerGroup": group, "strimzi": {"cluster": "events", "namespace": kafka_ns}},
            "mysql": {"host": "m", "port": 3306, "database": "d", "adminSecretRef": {"name": "a"}},
            "cassandra": {"contactPoints": ["c"], "port": 9042, "localDatacenter": "dc1", "keyspace": "k",
                          "replication": {"strategy": "SimpleStrategy", "replicationFactor": 1}},
            "api": {"image": "i", "replicas": 1}, "consumer": {"image": "i", "replicas": 1}}})

    assert ownership.kafka_names_refused(osvc("team-a.orders", "team-a.projector"), {}) == ""
    assert ownership.kafka_names_refused(osvc("payments", "payments-projector", kafka_ns="team-a"), {}) == ""
    why = ownership.kafka_names_refused(osvc("payments", "team-a.projector"), {"team-b": "payments*"})
    assert "payments on the Kafka cluster kafka/events" in why and "ConfigMap kafka/simplecqrs-kafka-tenants" in why
    granted = {"team-a": "OnNewOrder*, shop-projector"}
    assert ownership.kafka_names_refused(osvc("OnNewOrder-x", "shop-projector"), granted) == ""
    assert "shop-projector2" in ownership.kafka_names_refused(osvc("OnNewOrder", "shop-projector2"), granted)
