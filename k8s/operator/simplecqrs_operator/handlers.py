"""kopf handlers: *when* to reconcile.  *What* reconciling does is in reconcile.py.

    create / update / resume  -> reconcile(); a store failure raises TemporaryError (retried with backoff)
    timer (resync)            -> reconcile(): drift in the stores or the children is repaired
    child Deployment event    -> reconcile(stores_too=False): a deleted/edited Deployment comes back,
                                 API/consumer readiness is reported as soon as it changes
    delete (finalizer)        -> finalize(): Delete drops the data, Retain keeps it; bounded retries
"""
from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from . import kube as kube_api
from . import reconcile
from .resource import GROUP, MANAGER, PLURAL, VERSION

RESYNC_SECONDS = float(os.environ.get("SIMPLECQRS_OPERATOR_RESYNC_SECONDS", "60"))
BACKOFF_SECONDS = float(os.environ.get("SIMPLECQRS_OPERATOR_BACKOFF_SECONDS", "2"))
BACKOFF_MAX_SECONDS = float(os.environ.get("SIMPLECQRS_OPERATOR_BACKOFF_MAX_SECONDS", "60"))
DELETE_ATTEMPTS = int(os.environ.get("SIMPLECQRS_OPERATOR_DELETE_ATTEMPTS", "5"))
MANAGED = {"app.kubernetes.io/managed-by": MANAGER}


def backoff(retry: int) -> float:
    """2, 4, 8, ... seconds, capped: how long kopf waits before retrying a failed handler."""
    return min(BACKOFF_SECONDS * 2 ** retry, BACKOFF_MAX_SECONDS)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # End watch requests well before the apiserver would (and give up on a silent stream),
    # so a connection that died without a FIN is noticed within minutes.
    settings.watching.server_timeout = 240
    settings.watching.client_timeout = 270
    settings.watching.connect_timeout = 30
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # A deletion waits for the resync timer to stop, and a pass in progress cannot be cancelled (a sync
    # handler, in a thread).  kopf re-checks every 60 s by default: a delete arriving during a pass
    # then hung for a minute (a Retain delete timed out in the suite).  Wait for the pass itself, and
    # re-check often.
    settings.background.instant_exit_timeout = 10
    settings.background.cancellation_polling = 2
    # Events: the explicit ones (reconcile.event) plus kopf's warnings and errors, not its chatter.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = MANAGER
    # Only our own Deployments are watched, filtered by the apiserver.
    # (The key is kopf's selector tuple: a "apps/v1/deployments" string matched no resource, and the
    # operator streamed every Deployment in its scope.)
    settings.watching.label_selectors["apps", "v1", "deployments"] = ",".join(f"{k}={v}" for k, v in MANAGED.items())
    # Namespaced mode needs no cluster-wide permissions: no CRD or namespace watching
    # (the CRD must exist before the operator starts, as the chart and k8s/ install it).
    settings.scanning.disabled = not settings.peering.clusterwide
    memo.kube = kube_api.Kube(kube_api.client())


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def reconcile_on_change(name: str, namespace: str, retry: int, memo: kopf.Memo, **_: Any) -> None:
    failed = reconcile.reconcile(memo.kube, namespace, name)
    if failed:
        raise kopf.TemporaryError("; ".join(f"{c.type}={c.reason}: {c.message}" for c in failed),
                                 delay=backoff(retry))


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def resync(name: str, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    reconcile.reconcile(memo.kube, namespace, name)  # failures are in the status; the timer comes back


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
def child_deployment_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    owner = next((o for o in body.metadata.get("ownerReferences", []) if o.get("kind") == "OrderService"
                  and o.get("apiVersion", "").startswith(f"{GROUP}/")), None)
    if type is None or owner is None:  # None: the initial listing, which resume handles
        return
    reconcile.reconcile(memo.kube, body.metadata.namespace, owner["name"], stores_too=False)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    result = reconcile.finalize(memo.kube, dict(body), attempt=retry + 1, max_attempts=DELETE_ATTEMPTS)
    if not result.done:
        raise kopf.TemporaryError(result.message, delay=backoff(retry))
