"""``slack_export``: a person's profile and messages in a Slack workspace export.

Configuration::

    type = "slack_export"
    path = "/srv/exports/acme-slack"    # the unzipped export folder

The export holds ``users.json``, ``channels.json`` (and optionally
``groups.json``, ``mpims.json``, ``dms.json``) and one folder per
conversation with day files ``YYYY-MM-DD.json``, each a JSON list of messages.

Find: users whose profile email (or phone) matches give user ids; records are
the profile (collection ``users``) and every message posted by those ids
(collection = channel name, key = ``ts``). Erase deletes those messages,
removes the ids from others' reactions and thread summaries, and then blanks
the user entry (``deleted: true``, ``name`` = ``erased-<id>``). Files are
rewritten atomically in Slack's own layout (indent 4, UTF-8), through a dsar
temporary file (``.dsar-tmp-*``, :mod:`connectors.filestore`) that ``find``
and ``erase`` remove if a crash left it behind, so a half-written copy of
``users.json`` cannot keep an erased profile. ``find``, ``plan_erasure`` and
``erase`` stop between records (``erase``: between files) when the engine asks.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    normalise_identifier,
)

log = logging.getLogger(__name__)

USERS = "users"
#: conversation lists and the field naming each conversation's folder
CONVERSATIONS = (
    ("channels.json", "name"),
    ("groups.json", "name"),
    ("mpims.json", "name"),
    ("dms.json", "id"),
)
#: user fields blanked on erasure (besides the whole profile)
USER_BLANK = ("real_name", "tz", "tz_label")


class SlackExportConfigSchema(Schema):
    path = fields.String(required=True, validate=validate.Length(min=1))


def read_json(path: Path) -> Any:
    """Parse one export file; a missing or broken file is a PermanentError."""
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise PermanentError(f"the export has no {path.name}") from None
    except json.JSONDecodeError:
        raise PermanentError(f"{path.name} in the export is not valid JSON") from None
    except OSError as exc:
        raise RetryableError(
            f"cannot read {path.name}: {exc.strerror or type(exc).__name__}"
        ) from None


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically, keeping Slack's layout and the file's mode:
    a dsar temporary file in the same folder, then ``os.replace``. A crash
    leaves the old file whole and the temporary one for :func:`clean` to remove."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    data_bytes = json.dumps(data, indent=4, ensure_ascii=False).encode("utf-8")
    with filestore.staged(path.parent, data_bytes, path, mode) as tmp:
        os.replace(tmp, path)


def _older_temporary(name: str) -> bool:
    """A temporary file of this connector's earlier versions (``.users.json.k3j2.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp") and ".json." in name


def clean(root: Path) -> None:
    """Remove the temporary files crashed writes left in the export: in the
    root (users.json and the conversation lists) and every conversation folder."""
    filestore.clean(root, ours=_older_temporary)
    with os.scandir(root) as entries:
        folders = [e.path for e in entries if e.is_dir() and not e.name.startswith(".")]
    for folder in folders:
        filestore.clean(Path(folder), ours=_older_temporary)


def _profile_fields(user: dict[str, Any]) -> dict[str, Any]:
    profile = {k: v for k, v in (user.get("profile") or {}).items() if not k.startswith("image_")}
    profile.pop("avatar_hash", None)
    top = {
        k: user.get(k) for k in ("id", "name", "real_name", "deleted", "tz", "is_admin", "is_bot")
    }
    return {**top, "profile": profile}


def _message_fields(channel: str, day: str, msg: dict[str, Any]) -> dict[str, Any]:
    return {
        "channel": channel,
        "day": day,
        "ts": msg.get("ts"),
        "type": msg.get("type"),
        "subtype": msg.get("subtype"),
        "text": msg.get("text", ""),
        "thread_ts": msg.get("thread_ts"),
        "files": [f.get("name") for f in msg.get("files", []) if isinstance(f, dict)],
        "reactions": [
            {"name": r.get("name"), "count": r.get("count")} for r in msg.get("reactions", [])
        ],
        "reply_count": msg.get("reply_count", 0),
    }


def _blank(value: Any) -> Any:
    """An empty value of the same JSON type (booleans and numbers stay)."""
    if isinstance(value, str):
        return ""
    if isinstance(value, dict):
        return {}
    if isinstance(value, list):
        return []
    return value


def _mask_user(user: dict[str, Any]) -> None:
    user["name"] = f"erased-{user['id']}"
    for key in USER_BLANK:
        if key in user:
            user[key] = ""
    user["deleted"] = True
    profile = user.get("profile") or {}
    user["profile"] = {k: (v if k == "team" else _blank(v)) for k, v in profile.items()}


def _strip_reactions(msg: dict[str, Any], ids: set[str]) -> bool:
    """Remove ``ids`` from a message's reactions; True if it changed."""
    reactions, changed = [], False
    for reaction in msg.get("reactions", []):
        users = [u for u in reaction.get("users", []) if u not in ids]
        removed = len(reaction.get("users", [])) - len(users)
        if removed:
            changed = True
            reaction = {
                **reaction,
                "users": users,
                "count": max(0, reaction.get("count", 0) - removed),
            }
        if reaction.get("users") or reaction.get("count"):
            reactions.append(reaction)
    if changed and reactions:
        msg["reactions"] = reactions
    elif changed:
        del msg["reactions"]
    return changed


def _strip_thread(msg: dict[str, Any], ids: set[str]) -> bool:
    """Remove ``ids`` from a thread parent's replies summary; True if it changed."""
    changed = False
    replies = [r for r in msg.get("replies", []) if r.get("user") not in ids]
    if len(replies) != len(msg.get("replies", [])):
        changed = True
        msg["replies"], msg["reply_count"] = replies, len(replies)
    if any(u in ids for u in msg.get("reply_users", [])):
        changed = True
        msg["reply_users"] = [u for u in msg["reply_users"] if u not in ids]
        msg["reply_users_count"] = len(msg["reply_users"])
    return changed


class SlackExportConnector(Connector):
    """Finds and erases a person's profile and messages in a Slack export.

    Idempotent: a second run finds no messages of the ids left to delete and
    blanks an already blank profile again.
    """

    config_schema = SlackExportConfigSchema
    capabilities = frozenset({Capability.FIND, Capability.ERASE, Capability.STOP})
    identity_kinds = frozenset({"email", "phone"})

    @property
    def root(self) -> Path:
        return Path(self.config["path"])

    def check(self) -> CheckResult:
        """The folder exists and users.json and channels.json are JSON lists."""
        if not self.root.is_dir():
            return CheckResult(False, "the export folder does not exist")
        try:
            for name in ("users.json", "channels.json"):
                if not isinstance(read_json(self.root / name), list):
                    return CheckResult(False, f"{name} is not a JSON list")
        except (PermanentError, RetryableError) as exc:
            return CheckResult(False, str(exc))
        return CheckResult(True, "Slack export readable")

    # ------------------------------------------------------------- find
    def _users(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            raise PermanentError("the export folder does not exist")
        users = read_json(self.root / "users.json")
        if not isinstance(users, list):
            raise PermanentError("users.json is not a JSON list")
        return users

    def _matching_users(self, subject: Subject) -> list[dict[str, Any]]:
        emails, phones = subject.values("email"), subject.values("phone")
        found = []
        for user in self._users():
            profile = user.get("profile") or {}
            email = normalise_identifier("email", profile.get("email") or "")
            phone = normalise_identifier("phone", profile.get("phone") or "")
            if (email and email in emails) or (phone and phone in phones):
                found.append(user)
        return found

    def _conversations(self) -> Iterator[str]:
        """Folder names of the export's conversations, each once."""
        seen = set()
        for filename, field in CONVERSATIONS:
            path = self.root / filename
            entries = read_json(path) if path.exists() else []
            for entry in entries if isinstance(entries, list) else []:
                name = entry.get(field) if isinstance(entry, dict) else None
                if name and name not in seen and (self.root / name).is_dir():
                    seen.add(name)
                    yield name

    def _days(self, channel: str) -> Iterator[tuple[str, Path, list[dict[str, Any]]]]:
        for path in sorted((self.root / channel).glob("*.json")):
            messages = read_json(path)
            if isinstance(messages, list):
                yield path.stem, path, messages

    def _clean(self) -> None:
        """Remove a crash's leftovers before reading, so no stray copy of a
        file outlives an erasure unseen by the verifying find."""
        if not self.root.is_dir():
            raise PermanentError("the export folder does not exist")
        try:
            clean(self.root)
        except OSError as exc:
            raise RetryableError(
                f"cannot clean the export: {exc.strerror or type(exc).__name__}"
            ) from None

    def find(self, subject: Subject) -> Iterator[Record]:
        """Yield the matching profiles, then their messages, day file by day
        file; stops between records when asked."""
        self._clean()
        users = self._matching_users(subject)
        ids = {u["id"] for u in users}
        for user in users:
            check_stop()
            yield Record(USERS, user["id"], "profile", _profile_fields(user))
        if not ids:
            return
        count = 0
        for channel in self._conversations():
            for day, _, messages in self._days(channel):
                check_stop()
                for msg in messages:
                    if isinstance(msg, dict) and msg.get("user") in ids and msg.get("ts"):
                        check_stop()
                        count += 1
                        yield Record(
                            channel, msg["ts"], "message", _message_fields(channel, day, msg)
                        )
        log.debug("slack_export %s: %d users, %d messages found", self.name, len(ids), count)

    # ------------------------------------------------------------ erase
    def plan_erasure(self, subject: Subject) -> ErasurePlan:
        """DELETE each message, MASK each profile. ``extra`` holds the user
        ids (pseudonymous keys, no email or phone)."""
        plan = ErasurePlan(connector=self.name)
        ids = []
        for record in self.find(subject):
            if record.collection == USERS and record.category == "profile":
                ids.append(record.key)
                detail = "profile blanked (names, email, phone, title, images), marked deleted"
                plan.items.append(PlanItem(USERS, record.key, Action.MASK, detail))
            else:
                plan.items.append(
                    PlanItem(record.collection, record.key, Action.DELETE, "message deleted")
                )
        plan.extra["user_ids"] = sorted(ids)
        return plan

    def erase(self, plan: ErasurePlan) -> ErasureResult:
        """Delete the users' messages (all of them, by user id), strip their
        ids from others' reactions and threads, then blank their profiles.
        Each file is replaced whole; a stop between files reports what was
        done, and a rerun (or a crash's rerun) finishes the job. Erasures of
        one export take turns (:func:`connectors.filestore.exclusive`)."""
        ids = set(plan.extra.get("user_ids", []))
        if not ids:
            return ErasureResult()
        self._clean()
        deleted = 0
        try:
            with filestore.exclusive(self.root):  # one erasure at a time: see filestore
                for channel in self._conversations():
                    deleted += self._erase_in(channel, ids, deleted)
                check_stop(done=ErasureResult(deleted=deleted))
                masked = self._mask_users(ids)
        except OSError as exc:
            raise RetryableError(
                f"cannot write the export: {exc.strerror or type(exc).__name__}"
            ) from None
        log.info("slack_export %s: erased, %d deleted, %d masked", self.name, deleted, masked)
        return ErasureResult(deleted=deleted, masked=masked)

    def _erase_in(self, channel: str, ids: set[str], done_before: int) -> int:
        deleted = 0
        for _, path, messages in self._days(channel):
            check_stop(done=ErasureResult(deleted=done_before + deleted))
            kept = [m for m in messages if not (isinstance(m, dict) and m.get("user") in ids)]
            changed = len(kept) != len(messages)
            for msg in kept:
                if isinstance(msg, dict):
                    changed = _strip_reactions(msg, ids) | _strip_thread(msg, ids) | changed
            if changed:
                write_json(path, kept)
            deleted += len(messages) - len(kept)
        return deleted

    def _mask_users(self, ids: set[str]) -> int:
        users = self._users()
        targets = [u for u in users if isinstance(u, dict) and u.get("id") in ids]
        for user in targets:
            _mask_user(user)
        if targets:
            write_json(self.root / "users.json", users)
        return len(targets)
