"""simplecqrs: the shared core (configuration, event schema, store connections,
migrations) and the HTTP API (command and query routes).

Where to look first:
  config.py          every setting, from environment variables
  events.py          the OnNewOrder event: the one definition publisher and consumer share
  writemodel/        MySQL: connection, migrations, the order command (one transaction)
  outbox.py          the relay that publishes committed events to Kafka
  readmodel/         Cassandra: connection, schema, projection writes and queries
  api/               Flask application factory, command routes, query routes, errors
"""
