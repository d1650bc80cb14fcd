"""simplecqrs: the shared core (configuration, event schema, store connections,
migrations) and the HTTP API (command and query routes).

Where to look first:
  cli.py             the one command line, `simplecqrs`: a subcommand per process and tool
  config.py          every setting, from environment variables
  order.py           the order's fields, declared once, and the validation of a new order
  events.py          the OnNewOrder event: the one definition publisher and consumer share
  writemodel/        MySQL: connection, migrations, the order command (one transaction), the outbox's SQL
  relay/             the relays that publish committed events to Kafka (simplecqrs relay)
  readmodel/         Cassandra: connection, schema, projection writes and queries
  api/               Flask application factory, command routes, query routes, errors
"""
