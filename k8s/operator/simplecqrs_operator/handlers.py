"""kopf handlers: *when* to reconcile.  *What* reconciling does is in reconcile.py.

    create / update / resume  -> reconcile(); a store failure raises TemporaryError (retried with backoff)
    resync (one thread)       -> reconcile() of every OrderService every RESYNC_SECONDS: drift in the
                                 stores or the children is repaired
    child Deployment event    -> reconcile(stores_too=False): a deleted/edited Deployment comes back,
                                 API/consumer readiness is reported as soon as it changes
    delete, policy Delete     -> finalize(): drops the data; bounded retries (the only finalizer)
    deleted, policy Retain    -> a DataRetained event, when the operator sees it (nothing to do)

Only `deletionPolicy: Delete` puts a finalizer on an OrderService: a Retain instance can be deleted
while the operator is down.  That is why the resync is one loop over the list and not a kopf timer:
kopf puts a finalizer on every object a timer or daemon runs for.

The list is kopf's index of the OrderServices (`orderservice_index`), not a LIST request per pass:
the resync walks it, and each pass's store-conflict check compares against it.  kopf fills an
index from its initial listing before it runs any resource handler, so the first handler call
switches the operator over to it (`_use_index`); until then, and whenever the index cannot be read,
the apiserver is asked.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any

import kopf

from . import kube as kube_api
from . import reconcile, stores
from .resource import GROUP, MANAGER, PLURAL, VERSION

RESYNC_SECONDS = float(os.environ.get("SIMPLECQRS_OPERATOR_RESYNC_SECONDS", "60"))
# How long the resync waits for one instance before it goes on to the next: a store that does not
# answer stalls only its own instance (each store call has its own timeouts; this bounds their sum).
RESYNC_DEADLINE_SECONDS = float(os.environ.get("SIMPLECQRS_OPERATOR_RESYNC_DEADLINE_SECONDS", "30"))
BACKOFF_SECONDS = float(os.environ.get("SIMPLECQRS_OPERATOR_BACKOFF_SECONDS", "2"))
BACKOFF_MAX_SECONDS = float(os.environ.get("SIMPLECQRS_OPERATOR_BACKOFF_MAX_SECONDS", "60"))
DELETE_ATTEMPTS = int(os.environ.get("SIMPLECQRS_OPERATOR_DELETE_ATTEMPTS", "5"))
MANAGED = {"app.kubernetes.io/managed-by": MANAGER}
log = logging.getLogger(__name__)


def backoff(retry: int) -> float:
    """2, 4, 8, ... seconds, capped: how long kopf waits before retrying a failed handler."""
    return min(BACKOFF_SECONDS * 2 ** retry, BACKOFF_MAX_SECONDS)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, orderservice_index: Any = None,
              **_: Any) -> None:
    # End watch requests well before the apiserver would (and give up on a silent stream),
    # so a connection that died without a FIN is noticed within minutes.
    settings.watching.server_timeout = 240
    settings.watching.client_timeout = 270
    settings.watching.connect_timeout = 30
    settings.persistence.finalizer = f"{GROUP}/finalizer"
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
    memo.kube = kube_api.Kube(kube_api.client(), scope=memo.get("namespace"))
    memo.index = orderservice_index     # (empty yet: filled before the first resource handler)


@kopf.index(GROUP, VERSION, PLURAL)
def orderservice_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
    """Every OrderService in scope by (namespace, name), as the watch last delivered it."""
    return {(namespace, name): dict(body)}


def index_snapshot(index: Any) -> list[dict] | None:
    """The index's values as a list, read from a thread beside kopf's event loop, which may change
    it meanwhile: a few attempts, then None (the caller lists from the apiserver)."""
    for _ in range(3):
        try:
            return [body for store in list(index.values()) for body in list(store)]
        except RuntimeError:        # changed size during iteration
            continue
    return None


def _use_index(memo: kopf.Memo) -> None:
    """Called by the resource handlers, which kopf runs only once its indexes are filled."""
    if memo.kube.index is None and memo.get("index") is not None:
        memo.kube.index = lambda: index_snapshot(memo.index)


@kopf.on.startup()
def start_resync(memo: kopf.Memo, **_: Any) -> None:
    memo.resync_stop = threading.Event()
    memo.resync = threading.Thread(target=resync_loop, args=(memo.kube, memo.resync_stop),
                                   name="resync", daemon=True)
    memo.resync.start()


@kopf.on.cleanup()
def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    memo.resync_stop.set()
    memo.resync.join(timeout=30)     # a pass in progress finishes (its store timeouts bound it)
    stores.CLIENTS.close_all()


def resync_loop(kube: kube_api.Kube, stop: threading.Event, interval: float | None = None) -> None:
    """Every RESYNC_SECONDS, reconcile each OrderService in scope (one at a time; reconcile() takes
    the object's lock, so it never runs beside a handler of the same object, and skips one that is
    being deleted).  Failures are in the status; the next pass comes back.

    Each instance's pass runs in a thread of its own, waited for RESYNC_DEADLINE_SECONDS: one whose
    store does not answer is left to finish and the loop goes on with the others; its next pass
    starts only once that one has ended (never two threads for one instance)."""
    running: dict[tuple[str, str], threading.Thread] = {}
    while not stop.wait(RESYNC_SECONDS if interval is None else interval):
        try:
            items = kube.orderservices()
        except Exception:  # noqa: BLE001 - the apiserver is away: the next pass tries again
            log.exception("resync: listing OrderServices failed")
            continue
        for item in items:
            if stop.is_set():
                return
            key = (item["metadata"]["namespace"], item["metadata"]["name"])
            if (previous := running.get(key)) is not None and previous.is_alive():
                log.warning("resync of %s/%s skipped: its previous pass is still running", *key)
                continue
            running[key] = thread = threading.Thread(target=_resync_one, args=(kube, *key), daemon=True,
                                                     name=f"resync {key[0]}/{key[1]}")
            thread.start()
            thread.join(RESYNC_DEADLINE_SECONDS)
            if thread.is_alive():
                log.warning("resync of %s/%s still running after %.0f s; going on with the others",
                            *key, RESYNC_DEADLINE_SECONDS)


def _resync_one(kube: kube_api.Kube, namespace: str, name: str) -> None:
    try:
        reconcile.reconcile(kube, namespace, name)
    except Exception:  # noqa: BLE001 - one object's failure must not stop the others'
        log.exception("resync of %s/%s failed", namespace, name)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def reconcile_on_change(name: str, namespace: str, retry: int, memo: kopf.Memo, **_: Any) -> None:
    _use_index(memo)
    failed = reconcile.reconcile(memo.kube, namespace, name)
    if failed:
        raise kopf.TemporaryError("; ".join(f"{c.type}={c.reason}: {c.message}" for c in failed),
                                 delay=backoff(retry))


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
def child_deployment_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _use_index(memo)
    owner = next((o for o in body.metadata.get("ownerReferences", []) if o.get("kind") == "OrderService"
                  and o.get("apiVersion", "").startswith(f"{GROUP}/")), None)
    if type is None or owner is None:  # None: the initial listing, which resume handles
        return
    reconcile.reconcile(memo.kube, body.metadata.namespace, owner["name"], stores_too=False)


# The filter decides the finalizer too: kopf adds one only to objects a mandatory delete handler
# matches, and removes it when a change to Retain makes none match.
@kopf.on.delete(GROUP, VERSION, PLURAL, field="spec.deletionPolicy", value="Delete")
def delete(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    _use_index(memo)
    result = reconcile.finalize(memo.kube, dict(body), attempt=retry + 1, max_attempts=DELETE_ATTEMPTS)
    if not result.done:
        raise kopf.TemporaryError(result.message, delay=backoff(retry))


# (The `when` filter keeps kopf from calling, and logging, this for every other watch event.)
@kopf.on.event(GROUP, VERSION, PLURAL, field="spec.deletionPolicy", value="Retain",
               when=lambda type, **_: type == "DELETED")
def retained(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    reconcile.retained(memo.kube, dict(body))
