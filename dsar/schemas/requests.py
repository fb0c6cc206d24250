"""Schemas of requests: what may come in, and what an officer sees."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..workflow.states import RequestKind
from ..workflow.task_states import TaskStatus

IDENTIFIER_KINDS = ("email", "phone", "customer_id")


class SubmitInput(Schema):
    """A new request: kind, at least an email, optional name and message."""

    kind = fields.String(required=True, validate=validate.OneOf(tuple(RequestKind)))
    email = fields.Email(required=True, validate=validate.Length(max=254))
    phone = fields.String(load_default=None, validate=validate.Regexp(
        r"^\+?[0-9 ()./-]{5,32}$", error="Enter a phone number of digits, spaces and +()-./"))
    customer_id = fields.String(load_default=None, validate=validate.Length(min=1, max=120))
    name = fields.String(load_default=None, validate=validate.Length(max=200))
    message = fields.String(load_default=None, validate=validate.Length(max=5000))

    @validates_schema
    def _no_blank_email(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data.get("email", "").strip():
            raise ValidationError("Enter an email address.", "email")

    @staticmethod
    def identifiers(data: dict[str, Any]) -> dict[str, list[str]]:
        """The identifier kinds present in loaded ``data``."""
        return {kind: [data[kind]] for kind in IDENTIFIER_KINDS if data.get(kind)}


class TaskView(Schema):
    connector = fields.String()
    step = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    #: times taken back from a worker that died (not counted as attempts)
    reclaims = fields.Integer()
    records = fields.Integer(attribute="record_count")
    last_error = fields.String(allow_none=True)
    retrying_since = fields.AwareDateTime(allow_none=True)
    finished_at = fields.AwareDateTime(allow_none=True)


class WaitingView(Schema):
    """A store a request is waiting for: retried since, next try."""

    connector = fields.String()
    since = fields.AwareDateTime(attribute="retrying_since")
    next_try_at = fields.AwareDateTime(attribute="not_before")
    last_error = fields.String(allow_none=True)


def waiting_tasks(request: Any) -> list[Any]:
    """The tasks of ``request`` waiting to retry a store that failed."""
    return [t for t in request.tasks if t.status == TaskStatus.PENDING and t.retrying_since]


class IdentifierView(Schema):
    """Kinds and sources only: an officer's view shows no identifier values."""

    kind = fields.String()
    source = fields.String()
    added_at = fields.AwareDateTime()


class RequestOfficerView(Schema):
    id = fields.String()
    kind = fields.String()
    status = fields.String()
    received_at = fields.AwareDateTime()
    due_at = fields.AwareDateTime()
    verified_at = fields.AwareDateTime(allow_none=True)
    closed_at = fields.AwareDateTime(allow_none=True)
    is_review_required = fields.Boolean()
    status_reason = fields.String(allow_none=True)
    identifiers = fields.List(fields.Nested(IdentifierView))
    tasks = fields.List(fields.Nested(TaskView))
    waiting = fields.Function(lambda request: WaitingView(many=True).dump(
        waiting_tasks(request)))
