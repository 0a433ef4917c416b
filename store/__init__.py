"""Touchpoint's own small database (SQLite by default; the URL makes it PostgreSQL)."""
