"""Custom search attributes of journey runs: find every run of a journey, a version, a step, an
outcome, or a customer (by pseudonym, never by id or email).

They must be registered on the server: ``touchpoint dev`` and the tests pass
:data:`ALL` to the dev server; on a cluster, ``touchpoint setup`` (:mod:`ops.setup`).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

JOURNEY_ID = SearchAttributeKey.for_keyword("TouchpointJourney")
JOURNEY_VERSION = SearchAttributeKey.for_keyword("TouchpointVersion")
JOURNEY_STEP = SearchAttributeKey.for_keyword("TouchpointStep")
JOURNEY_STAGE = SearchAttributeKey.for_keyword("TouchpointStage")
JOURNEY_OUTCOME = SearchAttributeKey.for_keyword("TouchpointOutcome")
CUSTOMER = SearchAttributeKey.for_keyword("TouchpointCustomer")

ALL = (JOURNEY_ID, JOURNEY_VERSION, JOURNEY_STEP, JOURNEY_STAGE, JOURNEY_OUTCOME, CUSTOMER)


def dev_server_flags() -> list[str]:
    """``--search-attribute Name=Keyword`` flags for ``temporal server start-dev``."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags


def at_start(journey_id: str, version: str, customer: str) -> TypedSearchAttributes:
    """What a run is started with (by the router, a broadcast, a segment crossing): its
    journey, version and the customer's pseudonym (``customer``: a customer hash,
    :func:`workflows.models.customer_hash`). Runs of input version 4 keep their step and
    outcome in the analytics store; ``TouchpointStep``, ``TouchpointStage`` and
    ``TouchpointOutcome`` belong to runs started before."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(JOURNEY_ID, journey_id),
            SearchAttributePair(JOURNEY_VERSION, version),
            SearchAttributePair(CUSTOMER, customer),
        ]
    )
