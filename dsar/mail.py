"""Mail out: SMTP in production, ``.eml`` files in the instance outbox in
development. The log says a mail was sent and its kind, never the address or
the content (it may carry a code).

Nothing calls :class:`Mailer` inside a transaction: mail is queued in the
outbox table with the change it tells about and handed over here by the
workers (:mod:`dsar.outbox`)."""

from __future__ import annotations

import logging
import smtplib
import ssl
import uuid
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)


class MailError(Exception):
    """The mail could not be handed over. ``reason`` names the error by type
    and SMTP code only (never an address or the server's text, which may
    quote one); ``permanent`` when the server refused every recipient for
    good (5xx), so trying again cannot help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(f"the mail server refused or was unreachable ({reason})")
        self.reason, self.permanent = reason, permanent


class Mailer:
    """Sends one plain-text mail at a time."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.smtp_url = settings.get("SMTP_URL")
        self.sender = settings["MAIL_FROM"]
        self.outbox = Path(settings["OUTBOX_DIR"])

    def send(self, to: str, subject: str, body: str, *, kind: str, ref: str = "",
             date: datetime | None = None) -> None:
        """Send (or write) the mail; ``kind`` and ``ref`` (no personal data)
        name it in the log; ``date`` is when it was written (default: now).
        Raises :class:`MailError`; blocks up to 30 s per SMTP step."""
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message["Date"] = formatdate(None if date is None else date.timestamp(), usegmt=True)
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        message.set_content(body)
        suffix = f" ({ref})" if ref else ""
        if self.smtp_url:
            self._smtp(message)
            log.info("mail %s sent over SMTP%s", kind, suffix)
        else:
            path = self._write(message)
            log.info("mail %s written to the outbox as %s%s", kind, path.name, suffix)

    def _write(self, message: EmailMessage) -> Path:
        self.outbox.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.outbox / f"{uuid.uuid4().hex}.eml"
        path.touch(mode=0o600)
        path.write_bytes(bytes(message))
        return path

    def _smtp(self, message: EmailMessage) -> None:
        url = urlsplit(str(self.smtp_url))
        secure = url.scheme == "smtps"
        port = url.port or (465 if secure else 25)
        try:
            client: smtplib.SMTP
            if secure:
                client = smtplib.SMTP_SSL(url.hostname or "", port, timeout=30,
                                          context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(url.hostname or "", port, timeout=30)
            with client:
                if not secure and "starttls" in url.query:
                    client.starttls(context=ssl.create_default_context())
                if url.username:
                    client.login(unquote(url.username), unquote(url.password or ""))
                client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _text in exc.recipients.values()})
            raise MailError(f"{type(exc).__name__} {'/'.join(map(str, codes))}",
                            permanent=all(code >= 500 for code in codes)) from None
        except smtplib.SMTPResponseException as exc:
            raise MailError(f"{type(exc).__name__} {exc.smtp_code}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(type(exc).__name__) from None
