"""The requester's notices: what the GDPR expects us to tell them, by mail.

One function per notice, each called by the workflow function that makes the
change it tells about (:mod:`.engine` for completion, :mod:`.requests` for the
officers' decisions), in the caller's transaction: the mail is queued in the
outbox (:func:`dsar.outbox.enqueue`) and commits or rolls back with the
change. The outbox row is the mail's record; the change's own audit event
says what happened, so a notice records no event of its own.

* ``access-ready``: the export is ready, until when and how many downloads
  (Art. 12(1), 15(3));
* ``erased``: what erasure did in each store, named by the store's
  requester-facing ``label`` (never its instance name), and what each legal
  hold kept and why, in the words the connector file gives the hold (Art.
  17(3), 12(1));
* ``denied``: the reason, and the right to complain to a supervisory
  authority and to seek a judicial remedy (Art. 12(4));
* ``extended``: the new due date and why (Art. 12(3));
* ``paused`` (what we need: identity or clarification) and ``resumed`` (the
  new due date): the clock that stopped while we waited for the requester;
* ``cancelled``: short, with the same rights as a denial.

Not told: ``partially_failed`` (an officer finishes it; ``completed`` tells),
``expired`` (never verified) and the steps between (the status page shows them).

Who: only the address the requester verified (:func:`verified_address`), never
one identity expansion found; a request nobody verified gets nothing (the code
mail is the only mail an unproven address receives). Each notice carries a
status link with a token minted for it (holder ``notice``): the status page,
never the download itself. Every word is a text of :mod:`dsar.texts`
(``mail.<notice>.*``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from .. import outbox
from ..models import ExportBundle, OutboxMail, Request, Task, TokenHolder
from ..registry import labels
from ..runtime import Runtime
from ..texts import say
from . import verification
from .subjects import given_by_requester
from .task_states import Step, TaskStatus


def verified_address(rt: Runtime, request: Request) -> str | None:
    """The address the requester proved (the first, sorted, of the emails
    they gave: the one the code went to), or ``None``: the request was never
    verified, or has no email of the requester's."""
    if request.verified_at is None:
        return None
    given = given_by_requester(rt, request, "email")
    return given[0] if given else None


def access_ready(session: Session, rt: Runtime, request: Request,
                 bundle: ExportBundle) -> OutboxMail | None:
    """The export ``bundle`` is released: until when, how many downloads, the
    status link."""
    if bundle.expires_at is None:
        return None
    texts = rt.texts
    downloads = say(texts, "mail.access_ready.downloads",
                    n=int(rt.settings["EXPORT_MAX_DOWNLOADS"]))
    return _queue(session, rt, request, "access_ready", downloads=downloads,
                  until=texts["format.datetime"].format(d=bundle.expires_at))


def erased(session: Session, rt: Runtime, request: Request,
           tasks: list[Task]) -> OutboxMail | None:
    """The erasure is done and verified: per store, what was deleted, masked
    and kept; per hold, what it kept and why."""
    texts = rt.texts
    results = [(t.connector, _result(t)) for t in tasks
               if t.step == Step.ERASE and t.status == TaskStatus.SUCCEEDED]
    stores = _store_lines(rt, results) or texts["mail.erased.nothing"]
    held: Counter[str] = Counter()
    for _name, result in results:
        held.update(result.get("held", {}))
    kept = (texts["mail.erased.kept"].format(holds=_hold_lines(rt, held))
            if held else "")
    return _queue(session, rt, request, "erased", stores=stores, kept=kept)


def denied(session: Session, rt: Runtime, request: Request) -> OutboxMail | None:
    """An officer denied the request: the reason given for the requester."""
    return _queue(session, rt, request, "denied", reason=request.status_reason or "")


def cancelled(session: Session, rt: Runtime, request: Request) -> OutboxMail | None:
    """The request was cancelled (its reason is the officer's: not told)."""
    return _queue(session, rt, request, "cancelled")


def extended(session: Session, rt: Runtime, request: Request) -> OutboxMail | None:
    """The deadline was extended (Art. 12(3)): the new date and why."""
    return _queue(session, rt, request, "extended", reason=request.extension_reason or "",
                  due_date=rt.texts["format.date"].format(d=request.due_at))


def paused(session: Session, rt: Runtime, request: Request) -> OutboxMail | None:
    """The clock stopped: what we wait for (the officer's note is not told)."""
    need = rt.texts[f"mail.paused.{request.paused_for}"]
    return _queue(session, rt, request, "paused", need=need)


def resumed(session: Session, rt: Runtime, request: Request) -> OutboxMail | None:
    """The clock runs again: the new due date."""
    return _queue(session, rt, request, "resumed",
                  due_date=rt.texts["format.date"].format(d=request.due_at))


def _queue(session: Session, rt: Runtime, request: Request, notice: str,
           **values: str) -> OutboxMail | None:
    """Queue notice ``notice`` (texts ``mail.<notice>.subject``/``.body``) to
    the verified address, with a status link of its own; nothing without one."""
    to = verified_address(rt, request)
    if to is None:
        return None
    texts, base = rt.texts, rt.settings["BASE_URL"].rstrip("/")
    token = verification.issue_token(session, rt, request, TokenHolder.NOTICE)
    values = {"kind_label": texts[f"kind.{request.kind}"], "portal_url": f"{base}/",
              "status_url": f"{base}/requests/{request.id}?token={token}", **values}
    return outbox.enqueue(session, rt, to, texts[f"mail.{notice}.subject"].format(**values),
                          texts[f"mail.{notice}.body"].format(**values),
                          kind=f"notice-{notice.replace('_', '-')}", request_id=request.id)


def _result(task: Task) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(task.result or "{}")
    return loaded


def _store_lines(rt: Runtime, results: list[tuple[str, dict[str, Any]]]) -> str:
    """One line per store that had records of the subject, by its label;
    stores without one together under a neutral name, last."""
    texts, label_of = rt.texts, labels(rt.connectors)
    named: dict[str, Counter[str]] = {}
    unnamed: Counter[str] = Counter()
    for name, result in results:
        counts = Counter({k: int(result.get(k, 0)) for k in ("deleted", "masked", "kept")})
        if not any(counts.values()):
            continue
        label = label_of.get(name)  # checked and stripped when the file was read
        if label:
            named.setdefault(label, Counter()).update(counts)
        else:
            unnamed.update(counts)
    lines = list(named.items())
    if unnamed:
        lines.append((texts["mail.erased.store.others" if named else "mail.erased.store.all"],
                      unnamed))
    return "\n".join(texts["mail.erased.store"].format(
        store=store, deleted=c["deleted"], masked=c["masked"], kept=c["kept"])
        for store, c in lines)


def _hold_lines(rt: Runtime, held: Mapping[str, int]) -> str:
    """One line per requester text: the records kept for it (holds with the
    same text, or none, together; the default text last)."""
    texts, own = rt.texts, rt.hold_texts
    default = texts["mail.erased.hold.default"]
    by_text: Counter[str] = Counter()
    for name in sorted(held):
        by_text[own.get(name, default)] += held[name]
    order = sorted(by_text, key=lambda text: text == default)  # stable: names' order kept
    return "\n".join(texts["mail.erased.hold"].format(
        records=say(texts, "mail.erased.records", n=by_text[text]), text=text)
        for text in order)
