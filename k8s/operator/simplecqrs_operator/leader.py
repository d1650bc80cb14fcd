"""Leader election: one operator replica reconciles, the others wait for its Lease.

What Kubebuilder / controller-runtime do, with the kubernetes client's own implementation
(`kubernetes.leaderelection`, a `coordination.k8s.io/v1` Lease): each replica has a fixed
identity (hostname + a random suffix), blocks until it holds the Lease, then renews it every
RETRY_PERIOD in a background thread while kopf runs in the main thread.

- Lost the Lease (no renewal within RENEW_DEADLINE, e.g. the apiserver unreachable, or another
  replica took it): the process exits at once, as controller-runtime does, so no handler of a
  former leader keeps going beside the new one; the kubelet restarts it as a candidate.
- Stopped (SIGTERM, a rollout): kopf finishes, then the Lease is released (holder emptied) so a
  standby takes over within RETRY_PERIOD instead of waiting LEASE_DURATION.
- Crashed or killed: a standby takes over LEASE_DURATION after it last saw the Lease change.

Updates carry the Lease's resourceVersion: two candidates can never both win.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import kubernetes
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger("simplecqrs_operator.leader")

# controller-runtime's defaults.
LEASE_DURATION = 15
RENEW_DEADLINE = 10
RETRY_PERIOD = 2


def identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def _lost() -> None:
    log.error("lost the leader Lease: exiting so that only one replica reconciles")
    logging.shutdown()
    os._exit(1)


def run_as_leader(name: str, namespace: str, work: Callable[[], None],
                  waiting: AbstractContextManager | None = None) -> None:
    """Block until this process holds Lease `namespace/name` (inside `waiting`), run `work()` (here,
    in this thread) while a background thread renews the Lease, then release it."""
    lock = LeaseLock(name, namespace, identity())
    config = electionconfig.Config(lock, lease_duration=LEASE_DURATION, renew_deadline=RENEW_DEADLINE,
                                   retry_period=RETRY_PERIOD, onstarted_leading=work, onstopped_leading=_lost)
    election = leaderelection.LeaderElection(config)
    log.info("waiting for the leader Lease %s/%s as %s", namespace, name, lock.identity)
    with waiting or nullcontext():
        election.acquire()                  # returns once this process holds the Lease
    log.info("holding the leader Lease %s/%s as %s", namespace, name, lock.identity)

    def renew() -> None:
        election.renew_loop()               # returns only when a renewal failed for RENEW_DEADLINE
        _lost()

    threading.Thread(target=renew, name="lease-renewal", daemon=True).start()
    work()
    release(lock)


def release(lock: LeaseLock) -> None:
    """Empty the holder if it is still us (a replace with the read resourceVersion), so a standby
    takes over at its next retry instead of after LEASE_DURATION."""
    api = kubernetes.client.CoordinationV1Api()
    reason = "conflicts"
    for _ in range(3):                      # a last renewal may have raced us (409): read again
        try:
            lease = api.read_namespaced_lease(lock.name, lock.namespace)
            if lease.spec.holder_identity != lock.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            api.replace_namespaced_lease(lock.name, lock.namespace, lease)
            log.info("released the leader Lease %s/%s", lock.namespace, lock.name)
            return
        except kubernetes.client.ApiException as e:
            reason = f"{e.status} {e.reason}"
            if e.status != 409:
                break
    log.warning("could not release the leader Lease %s/%s (%s): a standby takes over after %d s",
                lock.namespace, lock.name, reason, LEASE_DURATION)
