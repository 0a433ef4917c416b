"""The shop-facing HTTP API (ingestion, Segment-compatible)."""
