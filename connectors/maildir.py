"""``maildir``: a person's mail in a Maildir (with Maildir++ subfolders).

Configuration::

    type = "maildir"
    path = "/srv/mail/support/Maildir"
    others = "redact"     # redact (default) | remove | keep

A message belongs to the subject when one of the subject's addresses appears
in From, To, Cc, Reply-To or another address header. Messages the subject
sent (From) are deleted; in messages other people sent the subject's address
is replaced by ``redacted@invalid`` (``redact``), dropped (``remove``), or the
message is kept under the hold ``others-mail`` (``keep``).

Rewriting a message adds the new version and then removes the old one, so a
crash in between leaves a duplicate, never a loss; the new version gets a new
key (IMAP servers such as Dovecot cache sizes by file name). Flags and the
``new``/``cur`` subdirectory are kept.
"""

from __future__ import annotations

import hashlib
import logging
import mailbox
import os
from collections.abc import Iterable, Iterator
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import formataddr, getaddresses
from typing import Any

from marshmallow import Schema, fields, validate

from dsar.connector import (
    Action,
    Capability,
    CheckResult,
    Connector,
    ErasurePlan,
    ErasureResult,
    PermanentError,
    PlanItem,
    Record,
    RetryableError,
    Subject,
)

log = logging.getLogger(__name__)

TOP = "INBOX"
REDACTED = "redacted@invalid"
HOLD = "others-mail"
SENDER_HEADERS = ("From",)
#: headers scrubbed in messages other people sent (From is never the subject there)
OTHER_HEADERS = (
    "To",
    "Cc",
    "Bcc",
    "Reply-To",
    "Sender",
    "Resent-From",
    "Resent-To",
    "Resent-Cc",
    "Delivered-To",
    "X-Original-To",
    "Return-Path",
)


class MaildirConfigSchema(Schema):
    path = fields.String(required=True, validate=validate.Length(min=1))
    others = fields.String(
        load_default="redact", validate=validate.OneOf(["redact", "remove", "keep"])
    )


def address_hash(address: str) -> str:
    """A stable hash of a normalised address, so a plan carries no addresses."""
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()


def _addresses(message: Message, header: str) -> list[str]:
    return [
        addr.strip().lower()
        for _, addr in getaddresses([str(v) for v in message.get_all(header, [])])
        if addr
    ]


def _matching_headers(message: Message, hashes: set[str], headers: Iterable[str]) -> list[str]:
    """The headers among ``headers`` that hold one of the hashed addresses."""
    return [h for h in headers if any(address_hash(a) in hashes for a in _addresses(message, h))]


def _header_block(raw: bytes) -> bytes:
    """The raw header section of a message (up to the first empty line)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = raw.find(separator)
        if end != -1:
            return raw[:end]
    return raw


def _body(message: EmailMessage) -> str:
    try:
        part = message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""
    except (LookupError, ValueError, AttributeError):
        return ""


def _fields(message: EmailMessage) -> dict[str, Any]:
    def header(name: str) -> str:
        return ", ".join(str(v) for v in message.get_all(name, []))

    return {
        "from": header("From"),
        "to": header("To"),
        "cc": header("Cc"),
        "reply_to": header("Reply-To"),
        "subject": header("Subject"),
        "date": header("Date"),
        "message_id": header("Message-ID"),
        "body": _body(message),
    }


class MaildirConnector(Connector):
    """Finds and erases a person's messages in one Maildir tree.

    Records: collection = folder (``INBOX`` for the top level), key = the
    Maildir key, category ``email``. ``erase`` is idempotent: a key already
    gone is skipped, and a message is only rewritten or deleted if it still
    holds one of the subject's addresses.
    """

    config_schema = MaildirConfigSchema
    capabilities = frozenset({Capability.FIND, Capability.ERASE})
    identity_kinds = frozenset({"email"})

    # ------------------------------------------------------------ store
    def _root(self) -> mailbox.Maildir:
        path = self.config["path"]
        if not all(os.path.isdir(os.path.join(path, sub)) for sub in ("cur", "new", "tmp")):
            raise PermanentError("the configured path is not a Maildir (cur/new/tmp missing)")
        return mailbox.Maildir(path, factory=None, create=False)

    def _folders(self) -> Iterator[tuple[str, mailbox.Maildir]]:
        root = self._root()
        yield TOP, root
        for name in sorted(root.list_folders()):
            yield name, root.get_folder(name)

    def _folder(self, name: str) -> mailbox.Maildir:
        root = self._root()
        return root if name == TOP else root.get_folder(name)

    def check(self) -> CheckResult:
        """The path exists and is a Maildir (cur/new/tmp); folders list."""
        try:
            count = sum(1 for _ in self._folders())
        except PermanentError as exc:
            return CheckResult(False, str(exc))
        except OSError as exc:
            return CheckResult(
                False, f"cannot read the Maildir: {exc.strerror or type(exc).__name__}"
            )
        return CheckResult(True, f"Maildir with {count} folders")

    # ------------------------------------------------------------- find
    def _matches(self, subject: Subject) -> Iterator[tuple[str, str, bytes]]:
        """(folder, key, raw bytes) of every message naming one of the
        subject's addresses in an address header."""
        emails = subject.values("email")
        hashes = {address_hash(a) for a in emails}
        if not hashes:
            return
        # Cheap pre-filter: an address, in any syntax the header may use, keeps
        # its local part's characters together; only headers holding one are parsed.
        needles = {a.rpartition("@")[0] or a for a in emails}
        header_parser = BytesHeaderParser(policy=policy.compat32)
        try:
            for folder, box in self._folders():
                for key in box.iterkeys():
                    try:
                        raw = box.get_bytes(key)
                    except (KeyError, FileNotFoundError):  # removed meanwhile
                        continue
                    block = _header_block(raw).decode("utf-8", "replace").lower()
                    if not any(needle in block for needle in needles):
                        continue
                    headers = header_parser.parsebytes(raw)
                    if _matching_headers(headers, hashes, SENDER_HEADERS + OTHER_HEADERS):
                        yield folder, key, raw
        except OSError as exc:
            raise RetryableError(
                f"cannot read the Maildir: {exc.strerror or type(exc).__name__}"
            ) from None

    def find(self, subject: Subject) -> Iterator[Record]:
        """Yield one ``email`` record per message naming the subject."""
        count = 0
        for folder, key, raw in self._matches(subject):
            message = BytesParser(policy=policy.default).parsebytes(raw)
            count += 1
            yield Record(folder, key, "email", _fields(message))
        log.debug("maildir %s: %d messages found", self.name, count)

    # ------------------------------------------------------------ erase
    def plan_erasure(self, subject: Subject) -> ErasurePlan:
        """DELETE what the subject sent; MASK (or KEEP under ``others-mail``)
        what others sent. ``extra`` holds address hashes, not addresses."""
        hashes = {address_hash(a) for a in subject.values("email")}
        plan = ErasurePlan(connector=self.name, extra={"address_hashes": sorted(hashes)})
        header_parser = BytesHeaderParser(policy=policy.compat32)
        for folder, key, raw in self._matches(subject):
            headers = header_parser.parsebytes(raw)
            plan.items.append(self._plan_item(folder, key, headers, hashes))
        return plan

    def _plan_item(self, folder: str, key: str, headers: Message, hashes: set[str]) -> PlanItem:
        if _matching_headers(headers, hashes, SENDER_HEADERS):
            return PlanItem(folder, key, Action.DELETE, "message sent by the subject deleted")
        where = ", ".join(_matching_headers(headers, hashes, OTHER_HEADERS))
        others = self.config["others"]
        if others == "keep":
            return PlanItem(
                folder,
                key,
                Action.KEEP,
                f"hold {HOLD}: mail sent by other people is kept ({where})",
            )
        if others == "remove":
            return PlanItem(folder, key, Action.MASK, f"address removed from {where}")
        return PlanItem(folder, key, Action.MASK, f"address replaced by {REDACTED} in {where}")

    def erase(self, plan: ErasurePlan) -> ErasureResult:
        """Delete and rewrite the planned messages. Idempotent."""
        hashes = set(plan.extra.get("address_hashes", []))
        deleted = masked = kept = 0
        try:
            for item in plan.items:
                if item.action is Action.KEEP:
                    kept += 1
                elif self._erase_one(item, hashes):
                    deleted += item.action is Action.DELETE
                    masked += item.action is Action.MASK
        except OSError as exc:
            raise RetryableError(
                f"cannot write the Maildir: {exc.strerror or type(exc).__name__}"
            ) from None
        log.info("maildir %s: erased, %d deleted, %d masked", self.name, deleted, masked)
        return ErasureResult(deleted=deleted, masked=masked, kept=kept)

    def _erase_one(self, item: PlanItem, hashes: set[str]) -> bool:
        """Carry out one item; False when the message is gone or no longer
        names the subject (already erased)."""
        try:
            box = self._folder(item.collection)
            message = box.get_message(item.key)
        except (KeyError, FileNotFoundError, mailbox.NoSuchMailboxError):  # already gone
            return False
        if item.action is Action.DELETE:
            if not _matching_headers(message, hashes, SENDER_HEADERS):
                return False
            box.discard(item.key)
            return True
        if not _matching_headers(message, hashes, OTHER_HEADERS):
            return False
        for header in OTHER_HEADERS:
            _scrub(message, header, hashes, self.config["others"] == "remove")
        box.add(message)  # add first: a crash leaves a duplicate, never a loss
        box.discard(item.key)
        return True


def _scrub(message: mailbox.MaildirMessage, header: str, hashes: set[str], remove: bool) -> None:
    """Drop or replace the hashed addresses in one header, display names too."""
    values = message.get_all(header, [])
    pairs = getaddresses([str(v) for v in values])
    if not any(address_hash(addr) in hashes for _, addr in pairs):
        return
    kept = []
    for name, addr in pairs:
        if address_hash(addr) not in hashes:
            kept.append(formataddr((name, addr)))
        elif not remove and REDACTED not in kept:
            kept.append(REDACTED)
    if len(values) == 1 and kept:
        message.replace_header(header, ", ".join(kept))  # keeps the header's position
        return
    del message[header]
    if kept:
        message[header] = ", ".join(kept)
