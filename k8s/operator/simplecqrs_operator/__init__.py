"""The simplecqrs operator: an OrderService custom resource in, a running instance out.

    handlers.py    kopf handlers (when to reconcile)
    reconcile.py   the reconcile loop and deletion (what reconciling does)
    resource.py    the OrderService as a typed object
    children.py    pure functions: child manifests from the spec
    stores.py      topic, write store and read store: provisioning and deletion
    conditions.py  status conditions in the Kubernetes convention
    kube.py        the Kubernetes API calls (server-side apply, status, discovery)
"""
