"""The HTTP transport: V2 REST (health, metadata, JSON inference, repository), reports and /metrics."""
