"""The simplecqrs operator: an OrderService custom resource in, a running instance out.

    main.py        the process (`simplecqrs operator`): leader election, then kopf
    handlers.py    kopf handlers (when to reconcile)
    reconcile.py   the reconcile loop and deletion (what reconciling does)
    resource.py    the OrderService as a typed object
    children.py    pure functions: child manifests from the spec
    stores.py      write store and read store: provisioning and deletion (and the kept clients)
    topics.py      the topic: Strimzi KafkaTopic/KafkaUser objects, or the Kafka admin API
    ownership.py   whose an object or a store is: the instance writes only its own (tenant isolation)
    credentials.py the Secrets: those an OrderService names (the rules they pass, where their values
                   may go) and the one it owns (the generated users' passwords)
    addresses.py   host names compared as a pod resolves them
    conditions.py  status conditions in the Kubernetes convention
    kube.py        the Kubernetes API calls (server-side apply, status, discovery)
"""
