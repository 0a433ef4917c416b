"""Running journeys: workers, the event router, Temporal connection settings."""
