"""The PostgreSQL server the store tests start: ``ops/postgres.py`` (shared with ``bench/``)."""

from ops.postgres import Postgres, server_programs

__all__ = ["Postgres", "server_programs"]
