"""Small pure helpers of the ``rest`` connector: templates, dotted paths, links.

Identifiers reach a request only through :func:`fill` (JSON bodies and query
values, encoded afterwards by ``json.dumps`` / ``urlencode``) and
:func:`fill_path` (each value percent-encoded as one path segment), never by
splicing text into JSON or URLs.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

#: the only placeholders a template may hold
PLACEHOLDER = re.compile(r"\{(value|field|id)\}")
_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]*)*)")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def placeholders(template: Any) -> set[str]:
    """The placeholder names used anywhere in a template (keys excluded)."""
    found: set[str] = set()
    for text in _strings(template):
        found.update(PLACEHOLDER.findall(text))
    return found


def _strings(template: Any) -> Iterable[str]:
    if isinstance(template, str):
        yield template
    elif isinstance(template, Mapping):
        for item in template.values():
            yield from _strings(item)
    elif isinstance(template, list | tuple):
        for item in template:
            yield from _strings(item)


def fill(template: Any, values: Mapping[str, str]) -> Any:
    """A copy of ``template`` (JSON-like) with placeholders in its strings
    replaced. The result is still a structure: encoding happens afterwards,
    so a value with quotes or backslashes cannot change the JSON around it."""
    if isinstance(template, str):
        return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    if isinstance(template, Mapping):
        return {key: fill(item, values) for key, item in template.items()}
    if isinstance(template, list | tuple):
        return [fill(item, values) for item in template]
    return template


def fill_path(path: str, values: Mapping[str, str]) -> str:
    """A path template with each placeholder percent-encoded as one segment
    (``/`` included), so an id like ``../admin`` stays inside its segment."""
    return PLACEHOLDER.sub(lambda m: quote(values.get(m.group(1), ""), safe=""), path)


def fill_query(query: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, str]:
    """Query parameters with placeholders filled (names too, for
    ``{"{field}" = "{value}"}``); ``urlencode`` encodes them afterwards."""
    return {fill(name, values): _query_text(fill(item, values)) for name, item in query.items()}


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_query_text(v) for v in value)
    return str(value)


def dig(data: Any, path: str) -> Any:
    """The value at a dotted path (``paging.next.after``; digits index
    lists); ``""`` is the whole document; ``None`` when a step is missing."""
    if not path:
        return data
    for step in path.split("."):
        if isinstance(data, Mapping):
            data = data.get(step)
        elif isinstance(data, list) and step.isdigit() and int(step) < len(data):
            data = data[int(step)]
        else:
            return None
    return data


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a malformed port
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def same_origin(url: str, base: str) -> bool:
    return origin(url) == origin(base)


def link_header_next(value: str | None) -> str | None:
    """The ``rel="next"`` target of an RFC 8288 ``Link`` header, if any."""
    for target, params in _LINK.findall(value or ""):
        for param in params.split(";"):
            name, _, rel = param.partition("=")
            if name.strip().lower() == "rel" and "next" in rel.strip().strip('"').lower().split():
                return str(target).strip()
    return None


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds
    (fractions accepted) or an HTTP date; ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())
