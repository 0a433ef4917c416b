"""``touchpoint setup`` and ``touchpoint migrate``: what a deployment does once, before its
processes start (both are idempotent).

``touchpoint setup`` registers Touchpoint's search attributes on a Temporal namespace, once
per namespace, through the operator service — what ``temporal operator search-attribute create``
does by hand. Idempotent: attributes that exist with the right type are left alone.

Temporal Cloud does not let clients add search attributes (its operator service refuses with
"permission denied" or "unimplemented"); the command then says which to add in the Cloud UI or
with ``tcld``.

``touchpoint migrate`` brings the store's schema to the newest revision. Every API and worker
does the same when it starts (taking turns), so this is for upgrades: migrate once, then roll
the processes, and see the revision it reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import make_url
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from config.errors import ConfigurationError
from store.database import connect as connect_store
from workflows.search import ALL

KEYWORD = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
_REFUSALS = (
    RPCStatusCode.PERMISSION_DENIED,
    RPCStatusCode.UNIMPLEMENTED,
    RPCStatusCode.UNAUTHENTICATED,
)


@dataclass(frozen=True)
class Registered:
    name: str
    added: bool  # False: it was there already


def wanted() -> dict[str, int]:
    """Every Touchpoint search attribute by name, with its type (all are keywords)."""
    return {key.name: KEYWORD for key in ALL}


async def register_search_attributes(client: Client, namespace: str) -> list[Registered]:
    """Add the missing attributes to ``namespace``; say per attribute whether it was added.

    :class:`ConfigurationError` when the server does not let this client add them, or when a
    name exists with another type (nothing is added then)."""
    needed = wanted()
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        existing = {**listed.system_attributes, **listed.custom_attributes}
        clashes = [
            f"{name} as {_type_name(existing[name])}"
            for name, kind in needed.items()
            if name in existing and existing[name] != kind
        ]
        if clashes:
            them = "it" if len(clashes) == 1 else "them"
            raise ConfigurationError(
                f"namespace {namespace!r} has {', '.join(clashes)}, but Touchpoint needs {them} "
                f"as Keyword: remove {them} (`temporal operator search-attribute remove`) or use "
                "another namespace; nothing was added"
            )
        missing = {name: kind for name, kind in needed.items() if name not in existing}
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=namespace,
                    search_attributes=missing,  # type: ignore[arg-type]
                )
            )
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise ConfigurationError(
                f"there is no namespace {namespace!r} on this Temporal server ({error.message}); "
                "create it (`temporal operator namespace create`) or set "
                "TOUCHPOINT_TEMPORAL_NAMESPACE to one that exists"
            ) from None
        if error.status not in _REFUSALS:
            raise
        names = " ".join(f"{name}=Keyword" for name in needed)
        raise ConfigurationError(
            f"this Temporal server does not let this client register search attributes on "
            f"namespace {namespace!r} ({error.message}); on Temporal Cloud add them in the UI "
            f"(Namespaces → {namespace} → Custom Search Attributes) or with `tcld namespace "
            f"search-attributes add`, on a cluster ask its operator: {names}; or set "
            "worker.index_runs: false in touchpoint.yaml (runs are not searchable then)"
        ) from None
    return [Registered(name, name in missing) for name in needed]


def _type_name(kind: int) -> str:
    """``INDEXED_VALUE_TYPE_INT`` → ``Int``, as Temporal's CLI writes types."""
    return IndexedValueType.Name(kind).removeprefix("INDEXED_VALUE_TYPE_").title()  # type: ignore[arg-type]


@dataclass(frozen=True)
class Migrated:
    database: str  # the URL without its password
    revision: str | None
    newest: str | None


def migrate_store(database_url: str) -> Migrated:
    """Migrate the store at ``database_url`` (the store's own advisory lock makes concurrent
    starts wait) and read the revision it is at."""
    engine = connect_store(database_url)
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    scripts = ScriptDirectory(str(Path(__file__).parent.parent / "store" / "migrations"))
    return Migrated(
        database=make_url(database_url).render_as_string(hide_password=True),
        revision=revision,
        newest=scripts.get_current_head(),
    )
