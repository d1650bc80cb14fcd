"""The query side's projector: a Kafka consumer group that writes the Cassandra read model.

    main.py       the process (`simplecqrs consume`): settings, signals, health/metrics endpoint, the loop
    projector.py  the loop itself: poll -> decode -> write -> commit
    metrics.py    Prometheus metrics of one consumer process
"""
