"""The Cassandra read model: connection, schema (migrations), projection writes and queries."""
