"""The MySQL write model: connections, versioned migrations and the order command."""
