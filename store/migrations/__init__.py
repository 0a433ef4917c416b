"""Alembic migrations of Touchpoint's store, applied automatically by ``store.database.connect``."""
