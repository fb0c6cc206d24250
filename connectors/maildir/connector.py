"""``MaildirConnector``: find, plan and erase in a Maildir and its folders."""

from __future__ import annotations

import logging
import mailbox
import os
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser

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

from .addresses import (
    OTHER_HEADERS,
    REDACTED,
    SENDER_HEADERS,
    _header_block,
    _matching_headers,
    _scrub_headers,
    _searchable,
    address_hash,
    normalise_address,
)
from .bodies import (
    _body_names,
    _fields,
    _parse,
    _scrub_body,
)

log = logging.getLogger(__name__)

TOP = "INBOX"
HOLD = "others-mail"


class MaildirConfigSchema(Schema):
    path = fields.String(required=True, validate=validate.Length(min=1))
    others = fields.String(
        load_default="redact", validate=validate.OneOf(["redact", "remove", "keep"])
    )


# ----------------------------------------------------------------- addresses
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
        emails = {normalise_address(a) for a in subject.values("email")}
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
                    block = _searchable(_header_block(raw))
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
            message = BytesParser(_class=EmailMessage, policy=policy.default).parsebytes(raw)
            count += 1
            yield Record(folder, key, "email", _fields(message))
        log.debug("maildir %s: %d messages found", self.name, count)

    # ------------------------------------------------------------ erase
    def plan_erasure(self, subject: Subject) -> ErasurePlan:
        """DELETE what the subject sent; MASK (or KEEP under ``others-mail``)
        what others sent. ``extra`` holds address hashes, not addresses."""
        hashes = {address_hash(a) for a in subject.values("email")}
        plan = ErasurePlan(connector=self.name, extra={"address_hashes": sorted(hashes)})
        for folder, key, raw in self._matches(subject):
            plan.items.append(self._plan_item(folder, key, raw, hashes))
        return plan

    def _plan_item(self, folder: str, key: str, raw: bytes, hashes: set[str]) -> PlanItem:
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
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
        body = _body_names(_parse(raw), hashes)
        if others == "remove":
            detail = f"address removed from {where}"
            if body:
                detail += f"; replaced by {REDACTED} in the message body"
            return PlanItem(folder, key, Action.MASK, detail)
        detail = f"address replaced by {REDACTED} in {where}"
        return PlanItem(folder, key, Action.MASK, detail + (" and the message body" * body))

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
            old = box.get_message(item.key)  # its subdir, flags and date
            raw = box.get_bytes(item.key)
        except (KeyError, FileNotFoundError, mailbox.NoSuchMailboxError):  # already gone
            return False
        if item.action is Action.DELETE:
            if not _matching_headers(old, hashes, SENDER_HEADERS):
                return False
            box.discard(item.key)
            return True
        if not _matching_headers(old, hashes, OTHER_HEADERS):
            return False
        message = _parse(raw)
        _scrub_headers(message, hashes, self.config["others"] == "remove")
        _scrub_body(message, hashes)
        box.add(_stored(message, old))  # add first: a crash leaves a duplicate, never a loss
        box.discard(item.key)
        return True


def _stored(message: EmailMessage, old: mailbox.MaildirMessage) -> mailbox.MaildirMessage:
    """The rewritten message with the old one's subdirectory, flags and date."""
    stored = mailbox.MaildirMessage(message)
    stored.set_subdir("cur" if old.get_subdir() == "cur" else "new")
    stored.set_info(old.get_info())
    stored.set_date(old.get_date())
    return stored
