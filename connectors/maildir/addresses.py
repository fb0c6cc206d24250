"""Addresses in headers and in text: normalising, hashing, matching, scrubbing.

Only hashes of the subject's addresses travel in a plan; matching hashes
every address-like piece of a header or a text."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from email.message import Message
from email.utils import getaddresses

REDACTED = "redacted@invalid"
SENDER_HEADERS = ("From",)
#: headers scrubbed in messages other people sent (From is never the subject there)
OTHER_HEADERS = (
    "To",
    "Cc",
    "Bcc",
    "Reply-To",
    "Sender",
    "Resent-From",
    "Resent-To",
    "Resent-Cc",
    "Delivered-To",
    "X-Original-To",
    "Return-Path",
)
# An address in running text: a local part, "@", a dotted domain. Letters of
# any script, with combining marks (an NFD "ë").
_W = r"\w\u0300-\u036f"
_LABEL = rf"[{_W}](?:[{_W}-]*[{_W}])?"
#: the local part before an "@" (at most 128 characters are looked at) and the domain after it
_LOCAL_BEFORE_AT = re.compile(rf"[{_W}.!#$%&'*+/=?^`{{|}}~-]{{1,128}}\Z")
_DOMAIN_AFTER_AT = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
#: characters an address in prose is usually made of; a quote, "=" or "/"
#: before it is more likely punctuation than part of the local part
_PLAIN_LOCAL = re.compile(rf"[{_W}.+-]")




def normalise_address(address: str) -> str:
    """Trimmed, lower-cased, NFC; an IDNA (``xn--``) domain in Unicode form."""
    text = unicodedata.normalize("NFC", address.strip().lower())
    local, at, domain = text.rpartition("@")
    if not at or "xn--" not in domain:
        return text
    try:
        domain = domain.encode("ascii").decode("idna").lower()
    except UnicodeError:
        pass
    return f"{local}@{domain}"


def address_hash(address: str) -> str:
    """A stable hash of a normalised address, so a plan carries no addresses."""
    return hashlib.sha256(normalise_address(address).encode("utf-8", "surrogatepass")).hexdigest()


def _decoded(raw_value: str) -> str:
    """A header value parsed from bytes (non-ASCII bytes held as surrogates)
    with its UTF-8 bytes (RFC 6532) decoded; bytes that are not UTF-8 stay
    surrogates, so :func:`_encoded` gives the original back."""
    return raw_value.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")


def _encoded(text: str) -> str:
    """The inverse of :func:`_decoded`: a value to store with ``set_raw``."""
    return text.encode("utf-8", "surrogateescape").decode("ascii", "surrogateescape")


def _unfold(text: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", text)


def _holds(text: str, hashes: set[str]) -> bool:
    """Does a decoded address-header value name one of the hashed addresses?"""
    return any(address_hash(addr) in hashes for _, addr in getaddresses([_unfold(text)]) if addr)


def _matching_headers(message: Message, hashes: set[str], headers: Iterable[str]) -> list[str]:
    """The headers among ``headers`` that hold one of the hashed addresses."""
    wanted = {name.lower() for name in headers}
    hit = {
        name.lower()
        for name, value in message.raw_items()
        if name.lower() in wanted and _holds(_decoded(value), hashes)
    }
    return [name for name in headers if name.lower() in hit]


def _header_block(raw: bytes) -> bytes:
    """The raw header section of a message (up to the first empty line)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = raw.find(separator)
        if end != -1:
            return raw[:end]
    return raw


def _searchable(block: bytes) -> str:
    """The header block as the pre-filter searches it: UTF-8, lower-cased, NFC."""
    text = block.decode("utf-8", "replace").lower()
    return text if text.isascii() else unicodedata.normalize("NFC", text)


# ----------------------------------------------------------- header rewrite
def _top_level(text: str, wanted: str) -> list[int]:
    """Positions of the characters in ``wanted`` outside quoted strings,
    comments and angle brackets of an address list."""
    found: list[int] = []
    quoted = escaped = angle = False
    depth = 0
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif depth:
            depth += {"(": 1, ")": -1}.get(ch, 0)
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth = 1
        elif ch in "<>":
            angle = ch == "<"
        elif ch in wanted and not angle:
            found.append(i)
    return found


def _split_list(text: str) -> list[str]:
    """An address list split at its top-level commas; each piece keeps its
    own whitespace, so joining them with commas gives the text back."""
    cuts = [-1, *_top_level(text, ","), len(text)]
    return [text[a + 1 : b] for a, b in zip(cuts, cuts[1:], strict=False)]


def _group_marks(piece: str) -> tuple[str, str]:
    """A list piece's group opening (``Name:``) and closing (``;...``), if any."""
    colons, semicolons = _top_level(piece, ":"), _top_level(piece, ";")
    head = piece[: colons[0] + 1] if colons else ""
    return head, piece[semicolons[-1] :] if semicolons else ""


def _scrub_value(text: str, hashes: set[str], remove: bool) -> str:
    """A decoded address-list value without the hashed addresses: each one
    replaced by ``REDACTED`` (once per header) or dropped, group syntax kept.
    The other addresses keep their text (names, comments, RFC 2047 words)."""
    pieces: list[str] = []
    carry = ""  # the group opening of a dropped first member, for the next piece
    for piece in _split_list(text):
        if not _holds(piece, hashes):
            pieces.append(carry + piece)
            carry = ""
            continue
        head, tail = _group_marks(piece)
        if not remove and not any(REDACTED in p for p in pieces):
            lead = head + " " if head else piece[: len(piece) - len(piece.lstrip())]
            pieces.append(carry + lead + REDACTED + tail)
            carry = ""
        elif tail and not (carry or head) and pieces:
            pieces[-1] += tail
        elif tail or carry or head:
            carry += head + tail
            if tail:
                pieces.append(carry)
                carry = ""
    return ",".join([*pieces, carry] if carry else pieces).strip()


def _scrub_headers(message: Message, hashes: set[str], remove: bool) -> None:
    """Scrub every address header other people's mail may name the subject
    in, each occurrence in place; a header left empty is dropped. Other
    headers keep their raw text."""
    scrubbed = {name.lower() for name in OTHER_HEADERS}
    items = list(message.raw_items())
    for name in {name for name, _ in items}:
        del message[name]
    for name, value in items:
        if name.lower() in scrubbed and _holds(_decoded(value), hashes):
            value = _encoded(_scrub_value(_decoded(value), hashes, remove))
            if not value:
                continue
        message.set_raw(name, value)


# ------------------------------------------------------------- body rewrite
def _local_start(local: str, domain: str, hashes: set[str]) -> int | None:
    """Where a hashed address starts in ``local``: the whole run first, then
    after a character that is punctuation in prose (a quote, "=", "/")."""
    cuts = [0] + [i + 1 for i, ch in enumerate(local) if not _PLAIN_LOCAL.match(ch)]
    for cut in cuts:
        while cut < len(local) and local[cut] == ".":
            cut += 1
        if cut < len(local) and address_hash(f"{local[cut:]}@{domain}") in hashes:
            return cut
    return None


def _address_span(text: str, at: int, hashes: set[str]) -> tuple[int, int] | None:
    """The span of a hashed address around the ``@`` at ``at``, if it is one."""
    local = _LOCAL_BEFORE_AT.search(text, max(0, at - 128), at)
    domain = _DOMAIN_AFTER_AT.match(text, at + 1, at + 256)
    if local is None or domain is None:
        return None
    start = _local_start(local.group(), domain.group(), hashes)
    return None if start is None else (local.start() + start, domain.end())


def redact_text(text: str, hashes: set[str]) -> str:
    """``text`` with every hashed address, in any case, replaced by ``REDACTED``."""
    out: list[str] = []
    last = 0
    at = text.find("@")
    while at != -1:
        span = _address_span(text, at, hashes)
        if span is not None and span[0] >= last:
            out += [text[last : span[0]], REDACTED]
            last = span[1]
        at = text.find("@", max(at + 1, last))
    return "".join(out) + text[last:] if out else text
