"""What every API request passes before its view: body size and format, the
bearer token's shape, and the lookup of the caller's own request.

The body is read and parsed here, before any rate-limit key function looks at
it, so no input (however malformed, large or deeply nested) reaches code that
could fail on it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import g, request
from marshmallow import Schema, ValidationError
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge

from ..models import Request
from ..runtime import Runtime
from ..workflow import verification
from .errors import ApiError, text

#: largest body accepted (a full request is under 30 KB even in 4-byte UTF-8)
MAX_BODY_BYTES = 64 * 1024
_BEARER = re.compile(r"Bearer +([A-Za-z0-9._~+/-]{1,200}=*)", re.IGNORECASE)
_CHALLENGE = 'Bearer realm="dsar"'


def before_api_request() -> None:
    """Check the token's presence and the body's form; keep both on ``g``."""
    request.max_content_length = MAX_BODY_BYTES
    if request.endpoint == "api.no_route" or request.method == "OPTIONS":
        return  # answered by routing alone: nothing to authenticate or parse
    if request.view_args and "request_id" in request.view_args:
        g.api_token = bearer_token()
    g.api_body = read_body() if request.method in ("POST", "PUT", "PATCH") else None


def bearer_token() -> str:
    """The token of ``Authorization: Bearer <token>``, or a 401."""
    header = request.headers.get("Authorization")
    if header is None or not header.strip():
        raise ApiError(401, "token_missing", text("api.token_missing"),
                       headers={"WWW-Authenticate": _CHALLENGE})
    match = _BEARER.fullmatch(header.strip())
    if match is None:
        raise ApiError(401, "token_malformed", text("api.token_malformed"),
                       headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_request"'})
    return match.group(1)


def read_body() -> dict[str, Any] | None:
    """The JSON object sent, ``None`` when nothing was sent, or an error:
    413 too large, 415 not JSON, 400 not parseable or not an object."""
    if request.content_length is None and request.environ.get("wsgi.input_terminated"):
        # chunked: no length to refuse up front, and past the limit werkzeug's stream
        # ends quietly; one byte more than the limit, read from the server's own
        # (terminated) input, tells a cut body from a whole one
        raw = request.environ["wsgi.input"].read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise RequestEntityTooLarge()
    else:
        raw = request.get_data(cache=True)  # raises 413 past max_content_length
    if not raw.strip():
        return None
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", text("api.content_type"))
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # bad JSON or encoding; absurd nesting
        raise ApiError(400, "invalid_json", text("api.body_not_json")) from None
    if not isinstance(data, dict):
        raise ApiError(400, "not_an_object", text("api.body_not_object"))
    return data


def load(schema: Schema, *, required: bool = True) -> dict[str, Any]:
    """The body loaded by ``schema`` (which rejects unknown fields), or a 400
    whose message names the fields and whose ``fields`` says what is wrong."""
    body = g.get("api_body")
    if body is None:
        if required:
            raise ApiError(400, "empty_body", text("api.body_empty"))
        body = {}
    try:
        loaded: dict[str, Any] = schema.load(body)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_body": exc.messages}
        raise ApiError(400, "invalid_fields", text("api.invalid_fields",
                                                   fields=", ".join(sorted(messages))),
                       fields=messages) from None
    return loaded


def presented_token(_request_id: str) -> str:
    """The bearer token as sent, or ``""`` (for rate-limit keys: nothing is refused here)."""
    match = _BEARER.fullmatch(request.headers.get("Authorization", "").strip())
    return match.group(1) if match else ""


def owned(session: Session, rt: Runtime, request_id: str) -> Request:
    """The request ``request_id`` if the bearer token is its own, else a 404:
    the same answer for an unknown id and for anyone else's token (and for a
    token issued before the request was verified). Whom the token was given
    to is kept in ``g.api_holder``, the token's row in ``g.api_held``."""
    found = verification.find_token(session, rt, request_id, g.api_token)
    if found is None:
        raise ApiError(404, "not_found", text("api.not_found"))
    g.api_held, g.api_holder = found, found.holder
    return found.request
