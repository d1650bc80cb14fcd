"""The host tools (scripts/audit, seed, rebuild-read-model, bench) read the live instance and fail in
one line: an instance of this module's own on the node, addressed with --instance; its application
password rotated by the operator under the tools; the refusals a user meets, for real (issue 29)."""
from __future__ import annotations

import base64
import subprocess

import pytest
import support
import test_cluster as journeys
from test_cluster import kjson, orderservice_spec, started_instance, wait_for

from scripts.stack import paths
from scripts.stack.node import kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

image = journeys.image
operator = journeys.operator


def tool(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "KAFKA_", "CASSANDRA_"))}
    return subprocess.run([str(paths.ROOT / "scripts" / name), *args], capture_output=True, text=True, timeout=300,
                          env={**clean, **(env or {})})


@pytest.fixture(scope="module")
def inst(operator, image, run_id):
    spec = orderservice_spec(f"h{run_id}", image)
    spec["api"]["replicas"] = spec["consumer"]["replicas"] = 1
    yield from started_instance(f"host-tools-{run_id}", f"h{run_id}", spec)


def address(inst) -> str:
    return f"{inst.ns}/{inst.name}"


def audit_equal(inst, admin_mysql) -> str:
    last: list[subprocess.CompletedProcess] = []

    def equal():
        last[:] = [tool("audit", "--instance", address(inst))]
        return last[0].returncode == 0 and last[0]

    try:
        return wait_for(equal, 120, "the audit EQUAL").stdout
    except AssertionError as e:   # what the audit last said, where the pipeline holds orders, what the pods say
        try:
            stages = support.pipeline_stages(inst.settings(admin_mysql))
        except Exception as unread:  # noqa: BLE001 - the failure's message is still worth having
            stages = f"(the pipeline's stages not read: {type(unread).__name__}: {unread})"
        raise AssertionError(f"{e}; its last run: {last[0].stdout}{last[0].stderr}\n{stages}\n"
                             f"{journeys.what_pods_say(inst.ns, f'{inst.name}-api', f'{inst.name}-consumer')}") from None


def test_seed_then_audit_an_instance_named_on_the_command_line(inst, admin_mysql):
    seeded = tool("seed", "--count", "10", "--instance", address(inst))
    assert seeded.returncode == 0 and "created 10, failed 0" in seeded.stdout, seeded.stdout + seeded.stderr
    assert "-> EQUAL" in audit_equal(inst, admin_mysql)


def test_a_password_the_operator_rotates_is_read_live(inst, admin_mysql):
    """The application Secret deleted: the operator makes a new password (ALTER USER) and rolls the
    pods; the tools, with nothing re-run, log in with the new one (the audit reads the stores as
    that user: it needs no pod)."""
    secret = f"{inst.name}-mysql-app"
    before = kjson("-n", inst.ns, "secret", secret)["data"]["password"]
    kubectl("-n", inst.ns, "delete", "secret", secret)
    wait_for(lambda: (s := kjson("-n", inst.ns, "secret", secret)) and s["data"]["password"] != before, 120,
             "a new application password")
    assert "-> EQUAL" in audit_equal(inst, admin_mysql)
    assert base64.b64decode(kjson("-n", inst.ns, "secret", secret)["data"]["password"]) != base64.b64decode(before)


def test_each_failure_a_user_meets_is_one_line(inst, write_store):
    def one_line(out: subprocess.CompletedProcess, *words: str) -> None:
        lines = out.stderr.strip().splitlines()
        assert out.returncode != 0 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        assert all(w in lines[0] for w in words), lines[0]

    one_line(tool("audit", "--instance", "nosuch/none"), "no OrderService nosuch/none")
    one_line(tool("audit", env={"MYSQL_USER": "nobody", "MYSQL_PASSWORD": "wrong"}), "refused the login of nobody")
    write_store.stop()
    try:
        one_line(tool("audit", "--instance", address(inst)), "MySQL at 127.0.0.1", "does not answer", address(inst))
        debug = tool("audit", "--instance", address(inst), "--debug")
        assert debug.returncode != 0 and "Traceback" in debug.stderr
    finally:
        write_store.up()
