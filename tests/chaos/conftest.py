"""The chaos tests use the end-to-end fixtures: daemon processes and a fresh PostgreSQL table."""

from __future__ import annotations

from tests.e2e.conftest import daemons, postgres

__all__ = ["daemons", "postgres"]
