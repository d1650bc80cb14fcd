"""The outbox relays: publish the events committed to MySQL's outbox table to Kafka, in order, at least once.

    simplecqrs relay        (app/cli.py; health and metrics on OUTBOX_METRICS_PORT)

    main.py     the process: OUTBOX_RELAY picks the relay, /healthz /readyz /metrics, the position's reset
    binlog.py   the binlog relay (OUTBOX_RELAY=binlog, the default): follows MySQL's row-based binlog
    poll.py     the polling relay (OUTBOX_RELAY=poll): claims unpublished rows every poll interval
    base.py     what both share: the Kafka producer and its replacement, the drain of unpublished rows,
                liveness, pruning

The relays import base.py, never each other; the outbox table's SQL is the write model's
(app/writemodel/outbox.py).
"""
