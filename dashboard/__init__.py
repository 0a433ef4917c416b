"""The web dashboard for marketers (``touchpoint dashboard``): journeys with their live counts
and maps, a customer's runs and messages, failing runs. Read-only, behind a login."""

from dashboard.app import Sources, create_app

__all__ = ["Sources", "create_app"]
