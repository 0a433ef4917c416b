"""The example project's real delivery activities for tests: its templates and settings, a
SQLite store and a Maildir outbox in the test's own folder, nothing stubbed."""

from __future__ import annotations

from pathlib import Path

from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider
from activities.http import make_client
from activities.policies import PolicyChain
from activities.rendering import Renderer
from config.policies import PolicySettings
from language.validator import validate
from store.database import connect
from store.ledger import Ledger
from tests.conftest import ROOT


def example_delivery(
    folder: Path,
    *,
    policies: PolicySettings | None = None,
    chain: PolicyChain | None = None,
    unsubscribe_secret: bytes = b"s" * 32,
) -> DeliveryActivities:
    """``policies``: in place of the project's (touchpoint.yaml); ``chain``: in place of the
    whole policy chain (default: the standard one, built from the settings)."""
    config = validate((), root=ROOT).config
    if policies is not None:
        config = config.model_copy(update={"policies": policies})
    return DeliveryActivities(
        config=config,
        ledger=Ledger(connect(f"sqlite:///{folder / 'touchpoint.db'}")),
        renderer=Renderer.for_project(ROOT, config),
        email=MaildirProvider(folder / "outbox"),
        http=make_client(),
        unsubscribe_secret=unsubscribe_secret,
        environ={},
        policies=chain,
    )
