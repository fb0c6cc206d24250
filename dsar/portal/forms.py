"""What the portal's forms send, checked with the marshmallow input schema.

The form only decides which fields it reads (kind, email, name, message;
anything else is ignored) and turns the schema's errors into the texts a
requester reads: one message per field, from ``dsar/texts.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError

from ..schemas.requests import SubmitInput

FIELDS = ("kind", "email", "name", "message")
OPTIONAL = ("name", "message")
#: the element each field's error links to (the first radio for the kind)
ANCHORS = {"kind": "kind-access", "email": "email", "name": "name", "message": "message",
           "code": "code"}
_CODE = re.compile(r"^[0-9]{6}$")
_schema = SubmitInput()


@dataclass
class SubmitForm:
    """The values as entered (to show them again) and the errors by field."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


def read_submit(form: Mapping[str, str], texts: Mapping[str, str]) -> SubmitForm:
    """Load the submit form; ``errors`` is empty when ``data`` can be used."""
    values = {name: str(form.get(name, "")) for name in FIELDS}
    stripped = {name: value.strip() for name, value in values.items()}
    raw = {name: value for name, value in stripped.items() if value or name not in OPTIONAL}
    result = SubmitForm(values)
    try:
        result.data = _schema.load(raw)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {}
        result.errors = {name: _message(name, raw.get(name, ""), texts)
                         for name in FIELDS if name in messages}
    return result


def _message(name: str, value: str, texts: Mapping[str, str]) -> str:
    if name in OPTIONAL:
        return texts[f"form.{name}.too_long"]
    return texts[f"form.{name}.{'missing' if not value else 'invalid'}"]


def read_code(form: Mapping[str, str]) -> str | None:
    """The 6-digit code as typed (spaces and dashes allowed), or ``None``."""
    code = re.sub(r"[\s-]", "", str(form.get("code", "")))
    return code if _CODE.fullmatch(code) else None


def summary(errors: Mapping[str, str]) -> list[tuple[str | None, str]]:
    """The error summary's entries: (the element to link to, the message)."""
    return [(ANCHORS.get(name), text) for name, text in errors.items()]
