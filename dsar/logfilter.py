"""Keep status tokens and email addresses out of the web server's access log.

Werkzeug logs each request line (``"GET /requests/…?token=… HTTP/1.1" 200 -``).
A status link carries its token in the query, and a stray form or API client
may put an address in a URL. :class:`RedactingFilter` rewrites such records
before any handler sees them; :func:`install` puts it on the ``werkzeug``
logger once per process.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
_TOKEN = re.compile(r"((?:^|[?&;\s])(?:token|status_token|code)=)[^&;\s\"']*", re.IGNORECASE)
#: an address starts where a run of local-part characters starts (the lookbehind):
#: without it a long run with no address in it (a long URL) is rescanned from
#: every position, quadratic time in the log filter of every request
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+'-])[A-Za-z0-9._%+'-]+(?:@|%40)"
                    r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with token/code query values and email-looking strings replaced."""
    return _EMAIL.sub(REDACTED, _TOKEN.sub(rf"\1{REDACTED}", text))


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (formatted with its arguments) redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):  # a broken format: keep only the template
            text = str(record.msg)
        cleaned = redact(text)
        if cleaned != text:
            record.msg, record.args = cleaned, None
        return True


def install(logger_name: str = "werkzeug") -> None:
    """Add the filter to ``logger_name`` unless it is there already."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
