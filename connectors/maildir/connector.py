"""``MaildirConnector``: find, plan and erase in a Maildir and its folders."""

from __future__ import annotations

import io
import logging
import mailbox
import os
from collections.abc import Iterator
from contextlib import nullcontext
from email import policy
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path

from marshmallow import Schema, fields, validate

from connectors import filestore
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
    check_stop,
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
from .store import Folder

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
    capabilities = frozenset({Capability.FIND, Capability.ERASE, Capability.STOP})
    identity_kinds = frozenset({"email"})

    # ------------------------------------------------------------ store
    def _root(self) -> Path:
        path = Path(self.config["path"])
        if not all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            raise PermanentError("the configured path is not a Maildir (cur/new/tmp missing)")
        return path

    def _folders(self) -> Iterator[Folder]:
        """The top level, then each Maildir++ folder (``.Name``) by name."""
        root = self._root()
        yield Folder(TOP, root)
        with os.scandir(root) as entries:
            names = sorted(e.name for e in entries
                           if len(e.name) > 1 and e.name.startswith(".") and e.is_dir())
        for name in names:
            yield Folder(name[1:], root / name)

    def _folder(self, name: str) -> Folder | None:
        path = self._root() if name == TOP else self._root() / f".{name}"
        return Folder(name, path) if (path / "cur").is_dir() else None

    def check(self) -> CheckResult:
        """The path exists and is a Maildir (cur/new/tmp); folders list.
        Changes nothing (abandoned temporaries are left to find and erase)."""
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
            for folder in self._folders():
                folder.clean_tmp()  # a crash's leftovers go before anything is read
                for key in sorted(folder.files()):  # the same order on every file system
                    check_stop()
                    raw = folder.read(key)
                    if raw is None:  # removed meanwhile
                        continue
                    block = _searchable(_header_block(raw))
                    if not any(needle in block for needle in needles):
                        continue
                    headers = header_parser.parsebytes(raw)
                    if _matching_headers(headers, hashes, SENDER_HEADERS + OTHER_HEADERS):
                        yield folder.name, key, raw
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
                holds=(HOLD,),
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
        """Delete and rewrite the planned messages, one at a time, each fully
        or not at all; stops between messages when asked. Idempotent: a rerun
        after a crash or a stop finishes the job (see :mod:`.store`). Erasures
        of one Maildir take turns (:func:`connectors.filestore.exclusive`)."""
        hashes = set(plan.extra.get("address_hashes", []))
        folders: dict[str, Folder | None] = {}
        done = {Action.DELETE: 0, Action.MASK: 0, Action.KEEP: 0}
        try:
            # one erasure at a time: see connectors.filestore
            with filestore.exclusive(self._root()) if plan.items else nullcontext():
                for item in plan.items:
                    check_stop(done=_result(done))
                    if item.collection not in folders:
                        folders[item.collection] = self._opened(item.collection)
                    folder = folders[item.collection]
                    if item.action is Action.KEEP or (
                        folder is not None and self._erase_one(folder, item, hashes)
                    ):
                        done[item.action] += 1
        except OSError as exc:
            raise RetryableError(
                f"cannot write the Maildir: {exc.strerror or type(exc).__name__}"
            ) from None
        result = _result(done)
        log.info("maildir %s: erased, %d deleted, %d masked", self.name, result.deleted,
                 result.masked)
        return result

    def _opened(self, name: str) -> Folder | None:
        """The plan's folder with a crash's leftovers removed; None when gone."""
        folder = self._folder(name)
        if folder is not None:
            folder.clean_tmp()
        return folder

    def _erase_one(self, folder: Folder, item: PlanItem, hashes: set[str]) -> bool:
        """Carry out one item on the message's newest version; False when it
        is gone or no longer names the subject (already erased). An older
        version a crash left beside its rewrite is removed first."""
        versions = folder.versions(item.key)
        if not versions:
            return False
        *stale, latest = versions
        raw = folder.read(latest)
        if raw is None:
            return False
        for key in stale:
            folder.remove(key)
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
        if item.action is Action.DELETE:
            if not _matching_headers(headers, hashes, SENDER_HEADERS):
                return bool(stale)
            folder.remove(latest)
            return True
        if not _matching_headers(headers, hashes, OTHER_HEADERS):
            return bool(stale)
        message = _parse(raw)
        _scrub_headers(message, hashes, self.config["others"] == "remove")
        _scrub_body(message, hashes)
        new_key = folder.add_rewrite(latest, _serialised(message))  # add first: never a loss
        filestore.crash_point("maildir-copy-added", str(folder.path / folder.files()[new_key]))
        folder.remove(latest)
        return True


def _result(done: dict[Action, int]) -> ErasureResult:
    return ErasureResult(deleted=done[Action.DELETE], masked=done[Action.MASK],
                         kept=done[Action.KEEP])


def _serialised(message: EmailMessage) -> bytes:
    """The bytes ``mailbox.Maildir.add`` wrote for a rewritten message (kept
    the same so a rewrite's headers stay byte for byte)."""
    buffer = io.BytesIO()
    BytesGenerator(buffer, False, 0).flatten(mailbox.MaildirMessage(message))
    return buffer.getvalue()
