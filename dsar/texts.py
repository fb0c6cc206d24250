"""Every text a requester reads, in one place.

A company changes wording or language by pointing ``DSAR_TEXTS`` at a TOML
file with the keys to override (``[texts]`` table, same keys as below).
Placeholders use ``str.format`` names.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import ConfigError

DEFAULTS: dict[str, str] = {
    # verification mail (the code stays out of the subject: it shows on lock screens)
    "mail.code.subject": "Your verification code",
    "mail.code.body": (
        "Hello,\n\n"
        "We received a request for {kind_label} for this email address.\n"
        "To confirm it is you, enter this code on the request page:\n\n"
        "    {code}\n\n"
        "The code is valid for {minutes} minutes.\n"
        "Follow your request here: {status_url}\n\n"
        "If you did not make this request, ignore this mail: nothing will happen.\n"
    ),
    # the kind of request inside a sentence ("a request for {kind_label}"); the
    # status page names it with status.kind.*
    "kind.access": "a copy of your data",
    "kind.erasure": "the deletion of your data",
    # the requester's notices (dsar/workflow/notices.py), only to the address they
    # verified; every one has {kind_label}, {status_url} (a link of its own to the
    # status page) and {portal_url}
    "mail.access_ready.subject": "Your data is ready to download",
    "mail.access_ready.body": (
        "Hello,\n\n"
        "We have finished your request for {kind_label}. Download your data from your "
        "request page:\n\n"
        "    {status_url}\n\n"
        "You can download it {downloads} until {until}. After that, ask us again if you "
        "need a new copy.\n"
        "The file holds your personal data: keep it somewhere safe.\n"
    ),
    "mail.access_ready.downloads": "{n} times",
    "mail.access_ready.downloads.one": "once",
    "mail.erased.subject": "We have deleted your data",
    # {stores}: the mail.erased.store lines (or mail.erased.nothing); {kept}: the
    # mail.erased.kept paragraph, or nothing when no record was kept
    "mail.erased.body": (
        "Hello,\n\n"
        "Your request for {kind_label} is complete. What we did with the records we "
        "held about you:\n\n"
        "{stores}\n\n"
        "{kept}"
        "Follow your request here: {status_url}\n"
    ),
    "mail.erased.store": "- {store}: {deleted} deleted, {masked} with your details removed, "
                         "{kept} kept",
    "mail.erased.store.all": "Our systems",
    "mail.erased.store.others": "Our other systems",
    "mail.erased.nothing": "We found no records about you in our systems.",
    "mail.erased.kept": (
        "We kept some records because the law requires or allows us to keep them "
        "(GDPR Art. 17(3)):\n\n"
        "{holds}\n\n"
    ),
    "mail.erased.hold": "- {records}: {text}",
    "mail.erased.records": "{n} records",
    "mail.erased.records.one": "{n} record",
    # a hold the connector file gives no [holds.<name>] requester text
    "mail.erased.hold.default": "We must keep these records to meet a legal obligation or "
                                "to establish, exercise or defend legal claims, and keep them "
                                "only for as long as that requires.",
    "mail.denied.subject": "We cannot carry out your request",
    "mail.denied.body": (
        "Hello,\n\n"
        "We cannot carry out your request for {kind_label}.\n\n"
        "Why:\n"
        "{reason}\n\n"
        "If you disagree, you have the right to complain to a data protection supervisory "
        "authority, in particular in the country where you live, where you work or where "
        "you think the law was broken, and to ask a court to decide (GDPR Art. 12(4), 77 "
        "and 79).\n\n"
        "Follow your request here: {status_url}\n"
    ),
    "mail.extended.subject": "We need more time to answer your request",
    "mail.extended.body": (
        "Hello,\n\n"
        "We need more time for your request for {kind_label}: we will answer by "
        "{due_date} at the latest. The law allows up to two further months when "
        "requests are complex or many (GDPR Art. 12(3)).\n\n"
        "Why we need more time:\n"
        "{reason}\n\n"
        "Follow your request here: {status_url}\n"
    ),
    "mail.paused.subject": "We need something from you",
    # {need}: mail.paused.identity or mail.paused.clarification
    "mail.paused.body": (
        "Hello,\n\n"
        "Before we can go on with your request for {kind_label}, {need}\n"
        "Our privacy team will write to you about exactly what we need.\n\n"
        "Until we have it, the time we wait does not count: the date we answer by moves "
        "on by the time we wait.\n\n"
        "Follow your request here: {status_url}\n"
    ),
    "mail.paused.identity": "we need to confirm who you are.",
    "mail.paused.clarification": "we need you to tell us more about what you are asking for.",
    "mail.resumed.subject": "We are going on with your request",
    "mail.resumed.body": (
        "Hello,\n\n"
        "We are going on with your request for {kind_label}: we will answer by "
        "{due_date}.\n\n"
        "Follow your request here: {status_url}\n"
    ),
    "mail.cancelled.subject": "Your request was cancelled",
    "mail.cancelled.body": (
        "Hello,\n\n"
        "Your request for {kind_label} was cancelled: we will not go on with it.\n"
        "You can make a new request at any time: {portal_url}\n\n"
        "If you think we got this wrong, you have the right to complain to a data "
        "protection supervisory authority and to ask a court to decide (GDPR Art. 12(4), "
        "77 and 79).\n\n"
        "Follow your request here: {status_url}\n"
    ),
    # verification outcomes (portal and API)
    "verify.wrong_code": "That code is not right. {left} attempts left.",
    "verify.wrong_code.one": "That code is not right. {left} attempt left.",
    "verify.expired": "This code has expired. Ask for a new code.",
    "verify.too_many": "Too many wrong codes. Ask for a new code.",
    # the page after too many wrong codes: no code box, a new code (or when)
    "verify.locked": "Too many wrong codes were entered, so this code no longer works here. "
                     "Ask for a new code: we will send it to the same email address.",
    "verify.locked.link": "Or open the link in the latest email we sent you: the code in "
                          "that email still works there.",
    "resend.when": "You can ask for a new code in {wait}.",
    "verify.not_waiting": "This request is not waiting for a code.",
    "resend.cooldown": "A code was sent a moment ago. You can ask again in {wait}.",
    "resend.sent": "We sent a new code.",
    # downloads
    "download.expired": "This download link has expired.",
    "download.exhausted": "This file has been downloaded the maximum number of times.",
    "download.not_ready": "Your data is not ready yet.",
    # portal pages
    "portal.lang": "en",
    "portal.service_name": "Your personal data",
    "portal.skip_link": "Skip to main content",
    "portal.footer": "We answer requests about personal data within one month, as the GDPR "
                     "requires. Nothing on these pages needs JavaScript.",
    "portal.error_prefix": "Error: ",
    "portal.error_summary": "There is a problem",
    "portal.error_label": "Error:",
    "format.date": "{d.day} {d:%B %Y}",
    "format.datetime": "{d.day} {d:%B %Y, %H:%M} UTC",
    # a wait in words (texts.duration: rounded up; seconds under a minute, then
    # minutes, then hours and minutes), one and more than one
    "duration.second": "{n} second",
    "duration.seconds": "{n} seconds",
    "duration.minute": "{n} minute",
    "duration.minutes": "{n} minutes",
    "duration.hour": "{n} hour",
    "duration.hours": "{n} hours",
    "duration.and": "{hours} and {minutes}",
    "form.title": "Ask about your personal data",
    "form.intro": "You can ask for a copy of the personal data we hold about you, or ask us "
                  "to delete it. We send a code to your email address to check that it is "
                  "yours.",
    "form.kind.legend": "What would you like us to do?",
    "form.kind.access.label": "Send me a copy of my data",
    "form.kind.access.hint": "We collect what we hold about you into one file you can download.",
    "form.kind.erasure.label": "Delete my data",
    "form.kind.erasure.hint": "We delete what we hold about you, except what the law requires "
                              "us to keep. Our privacy team checks the request first.",
    "form.kind.missing": "Choose whether you want a copy of your data or want it deleted.",
    "form.kind.invalid": "Choose whether you want a copy of your data or want it deleted.",
    "form.email.label": "Email address",
    "form.email.hint": "The address you use with us. We send the code there.",
    "form.email.missing": "Enter your email address.",
    "form.email.invalid": "Enter an email address in the right format, like name@example.com.",
    "form.name.label": "Your name (optional)",
    "form.name.hint": "It can help us find your data. At most 200 characters.",
    "form.name.too_long": "Your name must be 200 characters or fewer.",
    "form.message.label": "Anything else we should know? (optional)",
    "form.message.hint": "At most 5,000 characters.",
    "form.message.too_long": "Your message must be 5,000 characters or fewer.",
    "form.submit": "Send request",
    "status.title": "Your request",
    "status.kind": "What you asked for",
    "status.kind.access": "A copy of your data",
    "status.kind.erasure": "Deleting your data",
    "status.state": "Where it stands",
    "status.received_at": "Received on",
    "status.due_at": "We answer by",
    "status.progress": "Progress in our systems",
    "status.store": "System",
    # a store the company gave no label (label in the connector file); numbered
    # when several have none
    "status.store.unlabelled": "One of our systems",
    "status.store.unlabelled_n": "Our system {n}",
    "status.store_state": "State",
    "status.reason": "Why",
    # while work is under way: a link to see the latest (no JavaScript needed); with
    # JavaScript the page also updates itself (status.refreshing), with a pause button
    "status.check_again": "Check again",
    "status.check_hint": "To see the latest, choose Check again.",
    "status.refreshing": "This page updates itself every 10 seconds.",
    "status.updates_paused": "Updates are paused. To see the latest, choose Check again.",
    "status.pause_updates": "Pause updates",
    "status.resume_updates": "Resume updates",
    "status.received": "We have received your request.",
    "status.verifying": "Check your email: enter the code we sent to confirm that the "
                        "address is yours.",
    "status.verified": "Your email address is confirmed. We are starting on your request.",
    "status.awaiting_review": "Your email address is confirmed. Next, our privacy team "
                              "checks the request before anything is deleted. We will "
                              "email you when there is news, and answer by the date below "
                              "at the latest: until then you need not do anything.",
    "status.approved": "Your request was approved. We are starting on it.",
    "status.processing": "We are working on your request in our systems.",
    "status.completed": "Your request is complete: your data is ready to download.",
    # a completed copy whose download link no longer works (never "ready to download")
    "status.completed.download_expired": "Your request is complete, but the link to "
                                         "download your data has expired: we no longer "
                                         "keep the file.",
    "status.completed.download_exhausted": "Your request is complete, but your data has "
                                           "been downloaded the most times we allow, so "
                                           "the link no longer works.",
    "status.completed.download_missing": "Your request is complete, but your data cannot "
                                         "be downloaded at the moment. Please try again "
                                         "later.",
    "status.new_access_request": "Ask for a new copy of your data",
    "status.new_request": "Make a new request",
    "status.completed.erasure": "Your request is complete: we deleted your data, except "
                                "what the law requires us to keep.",
    "status.partially_failed": "We could not finish part of your request yet. Our privacy "
                               "team has been told and will complete it.",
    "status.denied": "We cannot carry out this request.",
    # under a denied or cancelled request (GDPR Art. 12(4)), as in their mails
    "status.rights": "If you disagree, you have the right to complain to a data protection "
                     "supervisory authority, in particular in the country where you live, "
                     "where you work or where you think the law was broken, and to ask a "
                     "court to decide (GDPR Art. 12(4), 77 and 79).",
    "status.expired": "This request has expired: the email address was not confirmed in time.",
    "status.cancelled": "This request was cancelled.",
    "status.paused": "We need something from you before we can go on: we have written to "
                     "you. The time we wait is not counted: the date we answer by moves by it.",
    "status.paused.identity": "We need to confirm who you are before we can go on: we have "
                              "written to you about what we need. The time we wait is not "
                              "counted: the date we answer by moves by it.",
    "status.paused.clarification": "We need you to tell us more about what you are asking "
                                   "for: we have written to you. The time we wait is not "
                                   "counted: the date we answer by moves by it.",
    "status.extended": "Why we need more time",
    # the reasons an officer chooses from to deny an erasure (the console adds
    # their own words after it); an empty text is not offered
    "deny.reason.legal_obligation": "We must keep this data to meet a legal obligation "
                                    "(GDPR Art. 17(3)(b)).",
    "deny.reason.legal_claims": "We need this data to establish, exercise or defend legal "
                                "claims (GDPR Art. 17(3)(e)).",
    "deny.reason.identity": "We could not confirm that the data is about you (GDPR Art. "
                            "12(6)).",
    "deny.reason.unfounded": "The request is manifestly unfounded or excessive (GDPR Art. "
                             "12(5)).",
    "progress.waiting": "waiting",
    "progress.working": "in progress",
    "progress.done": "done",
    "progress.problem": "delayed: we will try again",
    "progress.stopped": "stopped",
    "verify.legend": "Confirm your email address",
    "verify.label": "Enter the 6-digit code from the email",
    "verify.hint": "The code is valid for {minutes} minutes.",
    "verify.format": "Enter the 6 digits of the code from the email.",
    "verify.submit": "Confirm",
    "resend.intro": "No email? Check your spam folder, or ask for a new code.",
    "resend.submit": "Send a new code",
    "download.link": "Download your data (zip file)",
    "download.valid": "The link works until {until}; {left} downloads left.",
    "download.valid.one": "The link works until {until}; {left} download left.",
    "download.left": "{left} downloads left.",
    "download.left.one": "{left} download left.",
    "error.back": "Go back to the start",
    "error.generic.title": "Something went wrong",
    "error.generic.body": "Please go back and try again.",
    "error.400.title": "Something was wrong with what was sent",
    "error.400.body": "Please go back, check the form and try again.",
    "error.csrf.title": "This form has expired",
    "error.csrf.body": "For your security, forms work only for a while and only on this site. "
                       "Go back, reload the page and try again.",
    "error.404.title": "Page not found",
    "error.404.body": "Check the link. If it came in our email, open it again from the email, "
                      "in full.",
    "error.405.title": "This page cannot be used like that",
    "error.405.body": "Please go back and use the buttons on the page.",
    "error.409.title": "Not possible right now",
    "error.410.title": "Download not available",
    "error.413.title": "What you sent is too large",
    "error.413.body": "Please shorten your message and try again.",
    "error.429.title": "Too many attempts",
    "error.429.body": "Please wait {wait}, then try again.",
    "error.500.title": "Sorry, there is a problem on our side",
    "error.500.body": "Please try again later.",
    "error.unavailable.title": "Please try again shortly",
    "error.unavailable.body": "Our service is briefly unavailable. Please try again in a few "
                              "seconds.",
    # api
    "api.invalid_fields": "Some fields are not valid: {fields}.",
    "api.body_empty": "The request body is empty: send a JSON object.",
    "api.body_not_json": "The request body is not valid JSON.",
    "api.body_not_object": "The request body must be a JSON object.",
    "api.content_type": "Send the request body as JSON, with Content-Type: application/json.",
    "api.too_large": "The request body is too large.",
    "api.bad_request": "The request could not be understood.",
    "api.token_missing": "Send your status token in the header "
                         "Authorization: Bearer <status_token>.",
    "api.token_malformed": "The Authorization header must be: Bearer <status_token>.",
    "api.forbidden": "This is not allowed.",
    "api.not_found": "There is no request with this id for this status token.",
    "api.no_route": "There is no such API address.",
    "api.method_not_allowed": "This address does not accept {method}.",
    "api.rate_limited": "Too many attempts. Wait a while, then try again.",
    "api.unavailable": "The service is briefly unavailable. Please try again in a few "
                       "seconds.",
    "api.no_export": "Only an access request has data to download.",
    "api.http_error": "The request failed: {name}.",
    "api.internal": "Something went wrong on our side. Please try again later.",
}


def say(texts: Mapping[str, str], key: str, **params: Any) -> str:
    """The text ``key`` formatted with ``params``, as a requester reads it.

    A count of one takes the singular: ``<key>.one`` when the count (``left``
    or ``n``) is 1 and the texts have it ("1 attempt left", "once"). A wait in
    ``seconds`` is also given as ``{wait}``, in words (:func:`duration`: "2
    minutes"); ``{seconds}`` stays the plain number, so a company's text written
    for it keeps working.
    """
    if 1 in (params.get("left"), params.get("n")) and f"{key}.one" in texts:
        key = f"{key}.one"
    if "seconds" in params:
        params = {"wait": duration(texts, float(params["seconds"])), **params}
    return texts[key].format(**params)


def duration(texts: Mapping[str, str], seconds: float) -> str:
    """``seconds`` in words, rounded up so that a requester who waits that long
    is never early: "31 seconds" under a minute, whole minutes under an hour
    ("59 minutes"), then hours and minutes ("1 hour and 5 minutes")."""
    whole = max(1, math.ceil(seconds))
    if whole < 60:
        return _count(texts, "second", whole)
    minutes = math.ceil(whole / 60)
    if minutes < 60:
        return _count(texts, "minute", minutes)
    hours, minutes = divmod(minutes, 60)
    if not minutes:
        return _count(texts, "hour", hours)
    return texts["duration.and"].format(hours=_count(texts, "hour", hours),
                                        minutes=_count(texts, "minute", minutes))


def _count(texts: Mapping[str, str], unit: str, n: int) -> str:
    return texts[f"duration.{unit}" if n == 1 else f"duration.{unit}s"].format(n=n)


def deny_reasons(texts: Mapping[str, str]) -> dict[str, str]:
    """The reasons an officer chooses from to deny an erasure, by key: the texts
    ``deny.reason.*`` (a company words them in ``DSAR_TEXTS``; an empty one is
    not offered)."""
    prefix = "deny.reason."
    return {key.removeprefix(prefix): text for key, text in texts.items()
            if key.startswith(prefix) and text.strip()}


def load_texts(path: str | None) -> dict[str, str]:
    """The defaults with the overrides of the TOML file at ``path``."""
    texts = dict(DEFAULTS)
    if not path:
        return texts
    try:
        data: Mapping[str, Any] = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"DSAR_TEXTS: cannot read {path}: {exc}") from None
    overrides = data.get("texts", {})
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"DSAR_TEXTS: {path}: unknown keys {', '.join(unknown)}")
    texts.update({k: str(v) for k, v in overrides.items()})
    if "{code}" in texts["mail.code.subject"]:  # a subject shows on lock screens
        raise ConfigError(f"DSAR_TEXTS: {path}: mail.code.subject must not hold {{code}}: "
                          "put the code in mail.code.body only")
    return texts
