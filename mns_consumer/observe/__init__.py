"""Observability: structured logging, metrics, health endpoints and systemd notifications."""
