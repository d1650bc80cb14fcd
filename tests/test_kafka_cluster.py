"""The Kafka cluster Strimzi runs, as a production cluster meets its faults: the product on it, as pods.

The stack's Kafka is Strimzi's `Kafka` `local` (scripts/stack/kafka.py): three KRaft nodes, each a
controller and a broker, run by the Cluster Operator built from Strimzi's source.  One OrderService
here (pods behind the Ingress, SCRAM users and KafkaTopics by Strimzi's Entity Operator) has its
topic on all three nodes with min.insync.replicas 2, as `make up`'s instance.  Each fault below runs
under steady load through the Ingress and ends with every acknowledged order in MySQL and the read
model equal to it (app/audit.py).  During each fault the relay's publish latency (created ->
acknowledged by Kafka) and the consumers' freshness (created -> projected) are read from the pods'
own histograms; the rows go to .local/faults/kafka-cluster.{json,txt} and the README's fault table.
"""
from __future__ import annotations

import json
import math
import time

import pytest
import test_cluster as journeys
from test_cluster import Instance as PodInstance
from test_cluster import Load, audit_equal_with, kjson, orderservice_spec, wait_for

from scripts import bench_measure as measure
from scripts.stack import errors, node, paths, strimzi
from scripts.stack import kafka as stack_kafka
from scripts.stack.node import kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.faults, pytest.mark.timeout(1200)]
ROWS: list[dict] = []
# The steady load of these faults: 2 clients, each pausing 0.1 s between orders (about 15 orders/s
# here).  test_cluster's default (4 clients, 0.05 s) keeps both cores busy; a rolling update of three
# brokers then takes many minutes and starves the Cluster Operator's liveness probe (1 s timeout).
LOAD = {"threads": 2, "pause": 0.1}
# test_cluster's fixtures, by name: the product image, and the operator as a Deployment from its chart.
image = journeys.image
operator = journeys.operator


@pytest.fixture(scope="module")
def replicated(operator, image, run_id):
    """An OrderService on the Strimzi cluster with its topic on every node, two in sync for a write."""
    tag = f"k{run_id}"
    spec = orderservice_spec(tag, image, strimzi=True)
    spec["kafka"].update(partitions=6, replicationFactor=stack_kafka.NODES, config={"min.insync.replicas": "2"})
    stack_kafka.grant(f"kafka-faults-{run_id}", spec["kafka"]["topic"], spec["kafka"]["consumerGroup"])
    yield from journeys.started_instance(f"kafka-faults-{run_id}", tag, spec)


def topic_of(inst: PodInstance) -> str:
    return f"OnNewOrder-{inst.tag}"


def metrics_urls(inst: PodInstance) -> tuple[list[str], list[str]]:
    """(the relays', the consumers') metrics endpoints: the pods' own addresses, which the host reaches."""
    from simplecqrs_operator.children import METRICS_PORT, RELAY_PORT

    relays = [f"http://{p['status']['podIP']}:{RELAY_PORT}" for p in inst.pods("api")]
    consumers = [f"http://{p['status']['podIP']}:{METRICS_PORT}" for p in inst.pods("consumer")]
    return relays, consumers


class Window:
    """The publish-latency and freshness histograms of the pods, from `with` until the models have
    converged (record() reads them again then: events held back by a fault are published later)."""

    def __init__(self, inst: PodInstance):
        self.relays, self.consumers = metrics_urls(inst)

    def __enter__(self) -> Window:
        self.t0 = time.monotonic()
        self.pub0 = measure.scrape_buckets(self.relays, measure.PUBLISH_METRIC)
        self.fresh0 = measure.scrape_buckets(self.consumers)
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.monotonic() - self.t0
        self.read()

    def read(self) -> None:
        self.published = measure.delta(measure.scrape_buckets(self.relays, measure.PUBLISH_METRIC), self.pub0)
        self.fresh = measure.delta(measure.scrape_buckets(self.consumers), self.fresh0)

    def figures(self) -> dict:
        def ms(hist: dict, p: float) -> float | None:
            v = measure.percentile(hist, p)
            return None if math.isnan(v) else round(v * 1000)

        return {"publish_p50_ms": ms(self.published, 50), "publish_p99_ms": ms(self.published, 99),
                "freshness_p50_ms": ms(self.fresh, 50), "freshness_p99_ms": ms(self.fresh, 99)}


def record(name: str, load: Load, window: Window, inst: PodInstance, admin_mysql, **extra) -> dict:
    t0 = time.monotonic()
    report = audit_equal_with(inst.settings(admin_mysql), load.acked, timeout=300)
    window.read()
    row = {"scenario": name, "sent": len(load.statuses) + len(load.errors), "acknowledged": len(set(load.acked)),
           "non_2xx": len([s for s in load.statuses if s >= 300]), "errors": len(load.errors),
           "in_write_model": report.orders_write, "fault_s": round(window.seconds),
           "converged_s": round(time.monotonic() - t0), **window.figures(), **extra}
    ROWS.append(row)
    out = paths.LOCAL / "faults" / "kafka-cluster.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(ROWS, indent=1))
    print(f"\n{json.dumps(row)}")
    return row


def assert_clean(load: Load) -> None:
    assert load.acked, "no order was accepted"
    bad = [s for s in load.statuses if s >= 300]
    assert not bad and not load.errors, (
        f"{len(bad)} non-2xx ({sorted(set(bad))}), errors {load.errors[:5]}, of {len(load.statuses)} requests")


def pods_of_pool() -> list[dict]:
    return kjson("-n", stack_kafka.NAMESPACE, "pods", "-l",
                 f"{stack_kafka.CLUSTER_LABEL},strimzi.io/pool-name={stack_kafka.POOL}")["items"]


# ---------------------------------------------------------------- the cluster itself
def test_three_kraft_nodes_ready_and_the_topic_on_all_of_them(replicated):
    """`kubectl get kafka` Ready, the node pool's three nodes (controller and broker each), the
    instance's KafkaTopic with 3 replicas and min.insync.replicas 2, every replica in sync."""
    k = stack_kafka.kafka_resource()
    assert stack_kafka.condition(k)["status"] == "True"
    assert k["status"]["kafkaVersion"] == stack_kafka.VERSION
    pool = kjson("-n", stack_kafka.NAMESPACE, "kafkanodepool", stack_kafka.POOL)
    assert sorted(pool["status"]["nodeIds"]) == list(stack_kafka.NODE_IDS)
    assert sorted(pool["status"]["roles"]) == ["broker", "controller"]
    kt = kjson("-n", stack_kafka.NAMESPACE, "kafkatopic", f"{replicated.ns}.{replicated.name}.events")
    assert kt["spec"]["replicas"] == 3 and kt["spec"]["config"]["min.insync.replicas"] == "2"
    assert stack_kafka.condition(kt)["status"] == "True"
    stack_kafka.wait_in_sync(topic_of(replicated), timeout=60)


# ---------------------------------------------------------------- faults under load
def test_leader_broker_sigkilled_under_load_no_client_sees_an_error(replicated, admin_mysql):
    """The broker leading most of the topic's partitions SIGKILLed (its container, through the node's
    runtime): zero non-2xx answers, the others lead at once, the broker comes back and catches up."""
    topic = topic_of(replicated)
    stack_kafka.wait_in_sync(topic)
    with Load(replicated.host, **LOAD) as load, Window(replicated) as window:
        time.sleep(5)
        counts = stack_kafka.leader_counts(topic)
        victim = max(counts, key=counts.get)
        stack_kafka.kill_broker(victim)
        back = stack_kafka.wait_in_sync(topic)
        stack_kafka.wait_settled(topic)
        time.sleep(5)
    assert_clean(load)
    record("kafka-leader-sigkill (pods)", load, window, replicated, admin_mysql, broker=victim,
           back_in_sync_s=round(back))


def _pod_uids() -> dict[str, str]:
    """Each node's pod: a rolled node is a new pod (the operator deletes it, its StrimziPodSet makes it again)."""
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of_pool()}


def test_rolling_update_by_the_cluster_operator_killed_midway_under_load(replicated, admin_mysql):
    """A broker configuration changed in the `Kafka` resource: the Cluster Operator rolls all three
    nodes, one at a time; its own pod is SIGKILLed after the first node rolled; the new pod resumes
    and finishes.  Zero lost, zero 5xx."""
    topic = topic_of(replicated)
    stack_kafka.wait_in_sync(topic)
    before = _pod_uids()
    current = stack_kafka.kafka_resource()["spec"]["kafka"]["config"].get("log.retention.check.interval.ms", 300000)
    value = 300001 if int(current) != 300001 else 300000     # a change that needs a roll, harmless
    with Load(replicated.host, **LOAD) as load, Window(replicated) as window:
        time.sleep(5)
        kubectl("-n", stack_kafka.NAMESPACE, "patch", "kafka", stack_kafka.CLUSTER, "--type=merge", "-p",
                json.dumps({"spec": {"kafka": {"config": {"log.retention.check.interval.ms": value}}}}))
        wait_for(lambda: sum(before.get(n) != uid for n, uid in _pod_uids().items()) >= 1, 600, "the first node rolled")
        (op,) = kjson("-n", strimzi.NAMESPACE, "pods", "-l", strimzi.OPERATOR_SELECTOR)["items"]
        for status in op["status"]["containerStatuses"]:
            node.crictl("stop", "--timeout=0", status["containerID"].split("://", 1)[1], check=False)
        def all_rolled() -> dict | None:    # every node there again, each a new pod
            now = _pod_uids()
            return now if set(now) == set(before) and all(before[n] != uid for n, uid in now.items()) else None

        rolled = wait_for(all_rolled, 900, "all three nodes rolled (by the restarted Cluster Operator)")
        wait_for(lambda: stack_kafka.condition(stack_kafka.kafka_resource()).get("status") == "True", 300,
                 "the Kafka Ready again")
        stack_kafka.wait_in_sync(topic)
        time.sleep(5)
    assert_clean(load)
    assert set(rolled) == set(stack_kafka.POD_NAMES)
    record("kafka-rolling-update, operator killed midway (pods)", load, window, replicated, admin_mysql)


def test_two_of_three_brokers_down_orders_accepted_then_published(replicated, admin_mysql):
    """Two brokers kept down (their containers SIGKILLed each time the kubelet starts them) for 40 s:
    below min.insync.replicas, nothing is published, but every POST still answers 201 (the outbox
    holds the events); once they are back, everything converges."""
    topic = topic_of(replicated)
    stack_kafka.wait_in_sync(topic)
    victims = list(stack_kafka.NODE_IDS[:2])
    with Load(replicated.host, **LOAD) as load, Window(replicated) as window:
        time.sleep(5)
        t_end = time.monotonic() + 40
        kills = 0
        while time.monotonic() < t_end:
            for v in victims:
                try:
                    stack_kafka.kill_broker(v)
                    kills += 1
                except errors.StackError:
                    pass            # not running at this moment: the kubelet is about to start it
            time.sleep(0.5)
        acked_during = len(load.acked)
        back = stack_kafka.wait_in_sync(topic, timeout=420)
        settled = stack_kafka.wait_settled(topic)
        time.sleep(5)
    assert_clean(load)
    assert acked_during > 0
    record("kafka-two-of-three-down-40s (pods)", load, window, replicated, admin_mysql, kills=kills,
           back_in_sync_s=round(back), settled_s=round(back + settled))


def test_zz_print_kafka_fault_rows():
    """The rows above, printed (and in .local/faults/kafka-cluster.txt)."""
    if not ROWS:
        pytest.skip("no Kafka fault ran in this session")
    cols = list(ROWS[0])
    text = "\n".join(" ".join(f"{k}={r.get(k)}" for k in cols) for r in ROWS)
    (paths.LOCAL / "faults" / "kafka-cluster.txt").write_text(text + "\n")
    print("\n" + text)
    assert all(r["acknowledged"] <= r["in_write_model"] for r in ROWS)
