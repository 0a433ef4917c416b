"""The one rule for a recipient's email address, applied before anything is handed to a
provider (SendGrid, SMTP, the Maildir outbox), so every provider sends to exactly the same
addresses and refuses exactly the same ones.

An address is a **bare addr-spec**, ``local@domain``, and nothing else:

* no display name, angle brackets, comments, quotes or groups (``Evil <victim@x.com>``,
  ``a@x.com (b@y.com)``, ``"a b"@x.com``), and one address only (no ``,`` or ``;`` lists);
* no line breaks, control characters or whitespace inside (spaces and tabs around it are
  dropped);
* the local part is ASCII, RFC 5322's dot-atom: letters, digits and ``!#$%&'*+/=?^_`{|}~-``,
  dots only between them, at most 64 characters (no SMTPUTF8 mailboxes: not every relay and
  provider takes them, so none gets them);
* the domain is a host name of at least two labels (no ``[192.0.2.1]`` literals, no trailing
  dot), each label letters, digits and inner hyphens, at most 63 characters, the last not all
  digits. **IDN**: a domain with non-ASCII letters is lower-cased and converted to its ASCII
  form with IDNA 2008 (``max@bücher.de`` is sent as ``max@xn--bcher-kva.de``); what IDNA 2008
  does not allow (symbols, emoji, full-width letters, invalid joiners) is refused — nothing is
  silently mapped to look-alike letters;
* at most 254 characters as sent (RFC 5321's path limit, domain in ASCII form).

A refusal is :class:`InvalidEmailAddress`; its message says why and shows the address only
masked (``m…@example.com``), so no log line or run history holds it.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable

import idna
from temporalio.exceptions import ApplicationError

from activities.errors import permanent
from activities.messages import OutgoingEmail

MAX_ADDRESS = 254
MAX_LOCAL = 64
MAX_DOMAIN = 253
MAX_LABEL = 63

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_NOT_BARE = frozenset('<>()"[]\\:')  # display names, comments, quotes, literals, groups
_LIST = frozenset(",;")


class InvalidEmailAddress(ValueError):
    """Not a bare email address. The message says why, with the address masked."""


def email_address(text: object) -> str:
    """``text`` as the address handed to providers (an IDN domain in ASCII form), or
    :class:`InvalidEmailAddress`."""
    if not isinstance(text, str):
        raise InvalidEmailAddress("invalid email address: expected text")
    address = text.strip(" \t")
    shown = mask(address)

    def refused(why: str) -> InvalidEmailAddress:
        return InvalidEmailAddress(f"invalid email address {shown}: {why}")

    if not address:
        raise InvalidEmailAddress("invalid email address: it is empty")
    if any(c in "\r\n" or unicodedata.category(c) in ("Cc", "Cf") for c in address):
        raise refused("it contains a line break or a control character")
    if any(c in _LIST for c in address):
        raise refused("give one address, not a list")
    if any(c in _NOT_BARE for c in address):
        raise refused(
            "give the bare address (name@example.com): no display name, angle brackets, "
            "comments or quotes"
        )
    if any(c.isspace() for c in address):
        raise refused("it contains a space")
    count = address.count("@")
    if count != 1:
        raise refused("it has no @" if count == 0 else "it has more than one @")
    local, _, domain = address.partition("@")
    if not local:
        raise refused("nothing before the @")
    if not local.isascii():
        raise refused("the part before the @ must be ASCII")
    if len(local) > MAX_LOCAL:
        raise refused(f"the part before the @ is longer than {MAX_LOCAL} characters")
    if not _DOT_ATOM.fullmatch(local):
        raise refused(
            "the part before the @ may hold letters, digits, dots (not first, last or two in "
            "a row) and !#$%&'*+/=?^_`{|}~-"
        )
    ascii_domain = _host_name(domain, refused)
    sent = f"{local}@{ascii_domain}"
    if len(sent) > MAX_ADDRESS:
        raise refused(f"it is longer than {MAX_ADDRESS} characters")
    return sent


def _host_name(domain: str, refused: Callable[[str], InvalidEmailAddress]) -> str:
    """``domain`` in ASCII form (IDNA 2008 for an international one), or a refusal."""
    if not domain:
        raise refused("nothing after the @")
    if not domain.isascii():
        try:
            domain = idna.encode(unicodedata.normalize("NFC", domain.lower())).decode("ascii")
        except idna.IDNAError as error:
            raise refused(
                f"the domain is not a valid international domain name ({error})"
            ) from None
    if len(domain) > MAX_DOMAIN:
        raise refused(f"the domain is longer than {MAX_DOMAIN} characters")
    labels = domain.split(".")
    if len(labels) < 2:
        raise refused("the domain needs a dot (example.com)")
    for label in labels:
        if len(label) > MAX_LABEL or not _LABEL.fullmatch(label):
            raise refused(
                "the domain must be names of letters, digits and inner hyphens, joined by "
                "single dots"
            )
    if labels[-1].isdigit():
        raise refused("the domain must end in a name, not a number")
    return domain


def mask(text: str) -> str:
    """The address with the mailbox hidden: ``m…@example.com`` (``m…`` without an ``@``)."""
    local, at, domain = text.rpartition("@")
    if not at:
        return _printable(text[:1]) + "…"
    return f"{_printable(local[:1])}…@{_printable(domain[:64])}"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def refusal(error: InvalidEmailAddress) -> ApplicationError:
    """The step's failure for an address no provider gets: not retried."""
    return permanent(f"not sent: {error}", "RecipientUnreachable")


def with_checked_recipient(email: OutgoingEmail) -> OutgoingEmail:
    """``email`` addressed to the checked address (what every provider sends to); a refusal,
    not retried, for an address that is not one."""
    try:
        return dataclasses.replace(email, to=email_address(email.to))
    except InvalidEmailAddress as error:
        raise refusal(error) from None
