"""A local Maildir outbox: the development email provider, and what ``touchpoint outbox`` reads.

Every message lands as one file under ``new/`` of a standard Maildir (any mail client can open
it). The file name (the Maildir key) is derived from Touchpoint's message id, so a retried send
finds its earlier copy in O(1) instead of scanning: writing the same message id twice keeps one
message. Files are written to ``tmp/`` and renamed into ``new/``, so a reader never sees half a
message. File I/O is blocking, so the provider runs it in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import mailbox
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from activities.email.address import with_checked_recipient
from activities.email.mime import (
    MESSAGE_ID_HEADER,
    InvalidMessage,
    build_message,
    sender_domain,
)
from activities.errors import permanent, retryable
from activities.messages import OutgoingEmail

StrPath = str | os.PathLike[str]


@dataclass(frozen=True)
class OutboxEntry:
    key: str
    date: datetime | None
    to: str
    subject: str
    message_id: str | None  # Touchpoint's id (X-Touchpoint-Message-Id)


class MaildirProvider:
    """Writes each email into the Maildir at ``path`` (created on first use)."""

    name = "maildir"

    def __init__(self, path: StrPath) -> None:
        self.path = Path(path)

    async def send(self, email: OutgoingEmail) -> str:
        """The Maildir key of the message (the same key again for a repeated message id)."""
        email = with_checked_recipient(email)
        try:
            message = build_message(email, sender_domain(email.from_email))
        except InvalidMessage as error:
            raise permanent(str(error), "Rejected") from None
        try:
            return await asyncio.to_thread(store, self.path, message, email.message_id)
        except OSError as error:
            raise retryable(f"cannot write to the outbox {self.path}: {error}") from None


def key_for(message_id: str) -> str:
    """The Maildir key for a Touchpoint message id: stable, file-name safe, unique in its
    first 16 characters in practice (the outbox listing shows those)."""
    return hashlib.sha256(message_id.encode()).hexdigest()[:32]


def _holds(root: Path, key: str) -> bool:
    """Is the message ``key`` in new/ or — once a mail client has seen it, with flags after
    ":2," — in cur/? One look in new/ (where the outbox keeps its messages), then cur/'s
    names: not ``mailbox.Maildir``'s table of contents, whose rebuild made every send read
    every name in the outbox (a send cost grew with the outbox)."""
    if (root / "new" / key).exists():
        return True
    with os.scandir(root / "cur") as entries:
        return any(e.name == key or e.name.startswith((f"{key}:", f"{key}!")) for e in entries)


def store(path: StrPath, message: EmailMessage, message_id: str) -> str:
    """Write ``message`` unless a message with ``message_id`` is already there; its key."""
    root = Path(path)
    for folder in ("tmp", "new", "cur"):  # also when ``path`` exists but is no Maildir yet
        (root / folder).mkdir(parents=True, exist_ok=True)
    key = key_for(message_id)
    if _holds(root, key):
        return key
    temporary = root / "tmp" / f"{key}.{os.getpid()}.{uuid.uuid4().hex}"
    data = message.as_bytes(policy=message.policy.clone(linesep="\n"))
    with open(temporary, "xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    # A concurrent write of the same id replaces an identical message: still one message.
    os.replace(temporary, root / "new" / key)
    return key


def list_messages(path: StrPath) -> list[OutboxEntry]:
    """What the outbox holds, newest first; an outbox that does not exist yet is empty."""
    box = _open(path)
    if box is None:
        return []
    entries: list[tuple[float, OutboxEntry]] = []
    for key in box.iterkeys():
        with box.get_file(key) as file:
            headers = BytesParser(policy=policy.default).parse(file, headersonly=True)  # type: ignore[arg-type]
        date = _date(headers)
        when = date.timestamp() if date else _mtime(box, key)
        entries.append(
            (
                when,
                OutboxEntry(
                    key=key,
                    date=date,
                    to=str(headers.get("To", "")),
                    subject=str(headers.get("Subject", "")),
                    message_id=_optional(headers.get(MESSAGE_ID_HEADER)),
                ),
            )
        )
    entries.sort(key=lambda pair: (pair[0], pair[1].key), reverse=True)
    return [entry for _, entry in entries]


def read_message(path: StrPath, key_or_prefix: str) -> EmailMessage:
    """The message with this key, or the one key starting with this prefix.

    ``KeyError`` when none matches, ``LookupError`` when the prefix is ambiguous.
    """
    message = BytesParser(policy=policy.default).parsebytes(read_raw(path, key_or_prefix))
    assert isinstance(message, EmailMessage)
    return message


def read_raw(path: StrPath, key_or_prefix: str) -> bytes:
    """The message's file as stored, byte for byte (errors as :func:`read_message`)."""
    box = _open(path)
    keys = list(box.keys()) if box is not None else []
    if key_or_prefix in keys:
        matches = [key_or_prefix]
    else:
        matches = [key for key in keys if key_or_prefix and key.startswith(key_or_prefix)]
    if not matches:
        raise KeyError(key_or_prefix)
    if len(matches) > 1:
        raise LookupError(f"{len(matches)} messages start with {key_or_prefix!r}")
    assert box is not None
    with box.get_file(matches[0]) as file:
        return file.read()


def _open(path: StrPath) -> mailbox.Maildir | None:
    """The Maildir, or ``None`` when nothing was ever delivered there."""
    if not all((Path(path) / folder).is_dir() for folder in ("new", "cur")):
        return None
    return mailbox.Maildir(path, factory=None, create=False)


def _date(headers: EmailMessage) -> datetime | None:
    header = headers.get("Date")
    value = getattr(header, "datetime", None)
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _mtime(box: mailbox.Maildir, key: str) -> float:
    """When the file was delivered: the fallback order for a message without a usable Date."""
    try:
        return float(box.get_message(key).get_date())
    except (KeyError, OSError):
        return 0.0


def _optional(value: object) -> str | None:
    return str(value) if value is not None else None


def remove(path: StrPath, message_id: str) -> bool:
    """Delete the message with Touchpoint's ``message_id`` (in ``new/`` or ``cur/``); ``False``
    when it is not there (never was, or removed already)."""
    box = _open(path)
    if box is None:
        return False
    try:
        box.remove(key_for(message_id))
    except (KeyError, FileNotFoundError):
        return False
    return True


def purge(path: StrPath, before: datetime) -> int:
    """Delete the messages delivered (file written) before ``before``; how many went."""
    cutoff = before.timestamp()
    removed = 0
    for folder in ("new", "cur"):
        root = Path(path) / folder
        if not root.is_dir():
            continue
        for file in root.iterdir():
            try:
                if file.is_file() and file.stat().st_mtime < cutoff:
                    file.unlink()
                    removed += 1
            except FileNotFoundError:  # removed meanwhile (by another retention run)
                continue
    return removed
