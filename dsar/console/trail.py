"""The audit trail page: the chain's events filtered by request, officer or
actor, action and days, newest first, a page at a time; the state of the
chain's checks with "check now"; the filtered trail exported as CSV or JSONL,
streamed, the export itself an event in the trail.

Every filter is a query parameter checked here (:func:`parse`): a value that
is not one of ours is an error for the page to show, never a query. Pages go
back by event number (``before``), so a deep page costs what the first does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Response, redirect, request, stream_with_context, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from .. import audit, audit_checks
from ..models import Officer
from ..models.request import is_request_id
from ..officers import accounts
from ..runtime import runtime
from . import access, bp
from .views import render

PER_PAGE = 50
_ACTOR = re.compile(r"[a-z][a-z_-]*(:[A-Za-z0-9_.@-]{1,100})?")
_ACTION = re.compile(r"[a-z][a-z_]*(\.[a-z_]+)*")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
#: what each field is told when its value is not one of ours
WRONG = {"request": "A request id is 32 characters, 0 to 9 and a to f",
         "officer": "Choose an officer from the list",
         "actor": "An actor is a word such as requester, system or cli, or a word, a colon "
                  "and a name, such as connector:crm",
         "action": "An action is words joined by dots, such as request.approved",
         "since": "Enter the first day as a date, such as 2026-03-01",
         "until": "Enter the last day as a date, such as 2026-03-31",
         "before": "Choose a page from the links below the table",
         "format": "Choose CSV or JSON Lines",
         "kind": "Choose what to check"}
BOTH = "Choose an officer or type an actor, not both"
ORDER = "The last day is before the first day"
FORMATS = {"csv": ("text/csv; charset=utf-8", "csv"),
           "jsonl": ("application/x-ndjson; charset=utf-8", "jsonl")}


@dataclass(frozen=True)
class Filters:
    request: str = ""
    officer: str = ""
    actor: str = ""
    action: str = ""
    since: str = ""
    until: str = ""
    before: int | None = None

    @property
    def any(self) -> bool:
        return any((self.request, self.officer, self.actor, self.action, self.since,
                    self.until))

    def trail(self) -> audit.Trail:
        since = _day(self.since) if self.since else None
        until = _day(self.until) + timedelta(days=1) if self.until else None
        actor = f"officer:{self.officer}" if self.officer else self.actor
        return audit.Trail(request_id=self.request or None, actor=actor or None,
                           action=self.action or None, since=since, until=until)

    def args(self, **changed: Any) -> dict[str, Any]:
        """The query parameters of these filters (with ``changed``), empty ones left out."""
        values = {**asdict(self), **changed}
        return {k: v for k, v in values.items() if v}


def _day(text: str) -> datetime:
    return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)


def _is_day(text: str) -> bool:
    if not _DAY.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def parse(args: Mapping[str, str], officers: Mapping[str, str]) -> tuple[Filters, dict[str, str]]:
    """The filters in ``args``, and an error per field whose value is not one of
    ours (that field is then left out). ``officers``: id -> email."""
    names = ("request", "officer", "actor", "action", "since", "until", "before")
    values = {name: str(args.get(name, "")).strip() for name in names}
    values["request"] = values["request"].lower()
    valid = {
        "request": not values["request"] or is_request_id(values["request"]),
        "officer": not values["officer"] or values["officer"] in officers,
        "actor": not values["actor"] or (len(values["actor"]) <= 120
                                         and _ACTOR.fullmatch(values["actor"]) is not None),
        "action": not values["action"] or (len(values["action"]) <= 60
                                           and _ACTION.fullmatch(values["action"]) is not None),
        "since": not values["since"] or _is_day(values["since"]),
        "until": not values["until"] or _is_day(values["until"]),
        "before": not values["before"] or (values["before"].isascii()
                                           and values["before"].isdigit()
                                           and 0 < len(values["before"]) < 16
                                           and int(values["before"]) > 0),
    }
    errors = {name: WRONG[name] for name, ok in valid.items() if not ok}
    kept: dict[str, Any] = {n: v if valid[n] else "" for n, v in values.items()
                            if n != "before"}
    if kept["officer"] and kept["actor"]:
        errors["actor"] = BOTH
        kept["actor"] = ""
    if kept["since"] and kept["until"] and kept["until"] < kept["since"]:
        errors["until"] = ORDER
        kept["until"] = ""
    before = int(values["before"]) if valid["before"] and values["before"] else None
    return Filters(**kept, before=before), errors


def _officers() -> dict[str, str]:
    """Every officer's id and email address, for the filter and the table."""
    rt = runtime()
    with rt.transaction() as session:
        return {officer.id: accounts.email_of(rt, officer)
                for officer in session.scalars(select(Officer))}


@bp.get("/audit")
@access.allow(access.EVERYONE)
def trail_page() -> Response:
    officers = _officers()
    filters, errors = parse(request.args, officers)
    return _page(filters, errors, officers)


def _page(filters: Filters, errors: dict[str, str], officers: dict[str, str]) -> Response:
    rt = runtime()
    with rt.transaction() as session:
        events, older = audit.page(session, filters.trail(), before=filters.before,
                                   size=PER_PAGE)
        state = audit_checks.state(session, rt.crypto)
    return render("console_trail.html", 400 if errors else 200, filters=filters,
                  errors=errors, summary=list(errors.items()), events=events, older=older,
                  officers=officers, state=state, hours=rt.settings["AUDIT_FULL_CHECK_HOURS"])


@bp.post("/audit/check")
@access.allow(access.EVERYONE)
def ask_check() -> BaseResponse:
    kind = str(request.form.get("kind", ""))
    if kind not in audit_checks.KINDS:
        return render("console_message.html", 400, title="Choose what to check",
                      body=WRONG["kind"])
    rt = runtime()
    with rt.transaction() as session:
        audit_checks.ask(session, kind, actor=access.current().actor)
    return redirect(url_for(".trail_page", _anchor="checks"), 303)


@bp.post("/audit/export")
@access.allow(access.EVERYONE)
def export_trail() -> Response:
    officers = _officers()
    filters, errors = parse(request.form, officers)
    fmt = str(request.form.get("format", ""))
    if fmt not in FORMATS:
        errors["format"] = WRONG["format"]
    if errors:
        return _page(filters, errors, officers)
    rt = runtime()
    chosen = filters.args(before=None)
    with rt.transaction() as session:  # the chain as it is now, without this export's event
        trail = replace(filters.trail(), through=audit.head(session)["seq"])
        audit.record(session, rt.crypto, "audit.exported", actor=access.current().actor,
                     request_id=filters.request or None,
                     details={"format": fmt, "filters": chosen, "through": trail.through})
    content_type, extension = FORMATS[fmt]
    stamp = rt.now().strftime("%Y%m%dT%H%M%SZ")

    def stream() -> Iterator[str]:
        with rt.reading() as session:  # a long download holds no writer back
            yield from audit.lines(session, fmt, trail)

    response = Response(stream_with_context(stream()), content_type=content_type)
    response.headers["Content-Disposition"] = \
        f'attachment; filename="dsar-audit-{stamp}.{extension}"'
    response.headers["Cache-Control"] = "no-store"
    return response
