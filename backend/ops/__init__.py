"""Operating the service: worker heartbeats, health and readiness, Prometheus metrics."""
