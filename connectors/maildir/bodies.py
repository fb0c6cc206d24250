"""Message bodies: decoding text parts, redacting addresses in them, record fields."""

from __future__ import annotations

from collections.abc import Iterator
from email import policy
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesParser
from typing import Any

from .addresses import (
    _header_block,
    _unfold,
    redact_text,
)

#: body parts whose text is redacted (when not attachments)
TEXT_TYPES = ("text/plain", "text/html")
#: a rewritten message keeps its source headers as they are (no refolding)
REWRITE_POLICY = policy.default.clone(refold_source="none")



def _text_parts(part: Message) -> Iterator[EmailMessage]:
    """The text/plain and text/html parts that are not attachments, through
    nested multiparts (attached messages are left alone)."""
    payload = part.get_payload()
    if part.get_content_maintype() == "multipart" and isinstance(payload, list):
        for sub in payload:
            if isinstance(sub, Message):
                yield from _text_parts(sub)
    elif (
        part.get_content_type() in TEXT_TYPES
        and isinstance(part, EmailMessage)
        and not part.is_attachment()
    ):
        yield part


def _decode_text(part: EmailMessage) -> tuple[str, str]:
    """The part's text (transfer encoding undone) and the charset to write it
    back in: the declared one, else UTF-8, else Latin-1 (keeps the bytes)."""
    data = part.get_payload(decode=True)
    data = data if isinstance(data, bytes) else b""
    for charset in (part.get_content_charset() or "us-ascii", "utf-8"):
        try:
            return data.decode(charset), charset
        except (LookupError, UnicodeError):
            continue
    return data.decode("latin-1"), "latin-1"


def _body_names(message: Message, hashes: set[str]) -> bool:
    """Does a text part of the body hold one of the hashed addresses?"""
    texts = (_decode_text(part)[0] for part in _text_parts(message))
    return any(redact_text(text, hashes) != text for text in texts)


def _redact_part(part: EmailMessage, hashes: set[str]) -> bool:
    """Redact the hashed addresses in one text part, re-encoded with its
    charset and transfer encoding (quoted-printable, base64; else as the
    email package chooses). Its other Content-* headers are kept."""
    text, charset = _decode_text(part)
    redacted = redact_text(text, hashes)
    if redacted == text:
        return False
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    content_type = part.get("Content-Type")
    params = dict(getattr(content_type, "params", {}))
    params.pop("charset", None)
    kept = [
        (name, value)
        for name, value in part.raw_items()
        if name.lower().startswith("content-")
        and name.lower() not in ("content-type", "content-transfer-encoding")
    ]
    MIMEPart.set_content(
        part,
        redacted,
        subtype=part.get_content_subtype(),
        charset=charset,
        cte=cte if cte in ("quoted-printable", "base64") else None,
        params=params,
    )
    for name, value in kept:
        part.set_raw(name, value)
    return True


def _scrub_body(message: EmailMessage, hashes: set[str]) -> None:
    """Redact the hashed addresses in every text part of the body."""
    changed = [_redact_part(part, hashes) for part in _text_parts(message)]
    if any(changed) and "MIME-Version" not in message:
        message["MIME-Version"] = "1.0"


def _parse(raw: bytes) -> EmailMessage:
    """The whole message, to rewrite: written back with its own line ends."""
    linesep = "\r\n" if b"\r\n" in _header_block(raw) else "\n"
    parser = BytesParser(_class=EmailMessage, policy=REWRITE_POLICY.clone(linesep=linesep))
    return parser.parsebytes(raw)


# ------------------------------------------------------------------ records
def _readable(message: Message, name: str) -> str:
    """All values of a header for reading: RFC 2047 words and raw UTF-8 decoded."""
    values = [
        value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        for key, value in message.raw_items()
        if key.lower() == name.lower()
    ]
    return ", ".join(str(policy.default.header_factory(name, _unfold(v))) for v in values)


def _body(message: EmailMessage) -> str:
    try:
        part = message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""
    except (LookupError, ValueError, AttributeError):
        return ""


def _fields(message: EmailMessage) -> dict[str, Any]:
    return {
        "from": _readable(message, "From"),
        "to": _readable(message, "To"),
        "cc": _readable(message, "Cc"),
        "reply_to": _readable(message, "Reply-To"),
        "subject": _readable(message, "Subject"),
        "date": _readable(message, "Date"),
        "message_id": _readable(message, "Message-ID"),
        "body": _body(message),
    }
