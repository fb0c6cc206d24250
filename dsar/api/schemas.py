"""What integrators may send and what the API answers.

Inputs reject unknown fields (``unknown=RAISE``): a typo is an error, not a
silently dropped value. Outputs show only what a requester may see; the
request itself is dumped by :class:`dsar.schemas.requester.RequestRequesterView`.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

from ..schemas.requests import SubmitInput


def _refuse_unencodable(data: Any) -> Any:
    """Strings must be text a database and a mail can carry: no NUL, no lone
    surrogates (JSON's ``"\\ud800"`` decodes to one)."""
    if isinstance(data, dict):
        errors = {}
        for key, value in data.items():
            if isinstance(value, str) and ("\x00" in value or not _encodable(value)):
                errors[str(key)] = ["Contains characters that are not allowed."]
        if errors:
            raise ValidationError(errors)
    return data


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class SubmitBody(SubmitInput):
    """``{"kind", "email", "name"?, "message"?}``. Phone numbers and customer
    numbers are not taken here: the API proves control of an email address
    only, and an identifier nobody verified must not widen the search."""

    class Meta:
        unknown = RAISE
        exclude = ("phone", "customer_id")

    @pre_load
    def _text_only(self, data: Any, **_kwargs: Any) -> Any:
        return _refuse_unencodable(data)


class VerifyBody(Schema):
    class Meta:
        unknown = RAISE

    code = fields.String(required=True, validate=validate.Regexp(
        r"^\s*[0-9]{6}\s*$", error="Enter the 6 digits of the code from the email."))


class ResendBody(Schema):
    """Nothing to send; an empty body or ``{}``."""

    class Meta:
        unknown = RAISE


class SubmittedView(Schema):
    """The answer to a submission; the only time the status token is shown."""

    id = fields.String()
    status = fields.String()
    due_at = fields.AwareDateTime()
    status_token = fields.String()


class ResentView(Schema):
    id = fields.String()
    status = fields.String()
    message = fields.String()


class ExportView(Schema):
    """The download of a completed access request."""

    available = fields.Boolean()
    expires_at = fields.AwareDateTime(allow_none=True)
    downloads_left = fields.Integer()
    url = fields.String()
