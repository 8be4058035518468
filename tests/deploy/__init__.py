"""Deployment files (systemd unit, container image, alerts, dashboard, Kubernetes manifest), tested as code."""
