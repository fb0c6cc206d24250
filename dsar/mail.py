"""Mail out: SMTP in production, ``.eml`` files in the instance outbox in
development. The log says a mail was sent and its kind, never the address or
the content (it may carry a code).

Nothing calls :class:`Mailer` inside a transaction: mail is queued in the
outbox table with the change it tells about and handed over here by the
workers (:mod:`dsar.outbox`).

The connection is encrypted whenever it can be and always when it carries a
password: ``smtps://`` is TLS from the start; ``smtp://`` upgrades with
STARTTLS when the server offers it, and requires it when the URL names a user
(or says ``?starttls=required``). A password never crosses the network in
clear, and the server's certificate and name are always verified, against
``SMTP_CA_FILE`` when set (a private CA), else the system's CAs.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import entropy

log = logging.getLogger(__name__)

#: values of ``?starttls=`` on smtp:// URLs: auto (the default) upgrades when the
#: server offers STARTTLS, required refuses a server that does not, off never
#: upgrades (refused with a user: the password would go in clear)
STARTTLS_MODES = ("auto", "required", "off")


class MailError(Exception):
    """The mail could not be handed over. ``reason`` names the error by type
    and SMTP code only (never an address, a password or the server's text,
    which may quote one); ``permanent`` when the server refused every
    recipient for good (5xx), so trying again cannot help. Refusals of the
    deployment rather than of the mail (credentials refused, no STARTTLS, a
    certificate not trusted) are not permanent: mail waits in the outbox for
    the operator to fix the setting."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(f"the mail server refused or was unreachable ({reason})")
        self.reason, self.permanent = reason, permanent


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how mail is handed over, parsed from ``SMTP_URL``."""

    host: str
    port: int
    implicit_tls: bool
    starttls: str
    user: str | None = None
    password: str = field(default="", repr=False)

    @property
    def needs_tls(self) -> bool:
        """Refuse to go on in clear: a password to send, or the URL asks for TLS."""
        return self.implicit_tls or self.starttls == "required" or self.user is not None


def parse_smtp_url(url: str) -> SmtpTarget:
    """``smtp://[user:password@]host[:port][?starttls=auto|required|off]`` or
    ``smtps://[user:password@]host[:port]``. Raises ValueError saying what is
    wrong (never quoting the password)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"smtp", "smtps"} or not parts.hostname:
        raise ValueError("expected smtp://[user:password@]host[:port] or smtps://...")
    try:
        port = parts.port or (465 if scheme == "smtps" else 25)
    except ValueError:
        raise ValueError("the port is not a number") from None
    options = parse_qs(parts.query, keep_blank_values=True)
    if set(options) - {"starttls"}:
        raise ValueError("the only option is ?starttls=auto|required|off")
    if scheme == "smtps" and options:
        raise ValueError("?starttls is for smtp://; smtps:// is TLS from the start")
    starttls = options.get("starttls", ["auto"])[-1].lower() or "required"  # bare ?starttls
    if starttls not in STARTTLS_MODES:
        raise ValueError("?starttls= expects auto, required or off")
    user = unquote(parts.username) if parts.username else None
    if user is not None and starttls == "off":
        raise ValueError("?starttls=off with a user would send the password in clear; "
                         "dsar refuses to")
    return SmtpTarget(parts.hostname, port, scheme == "smtps", starttls, user,
                      unquote(parts.password or ""))


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifies the server's certificate and host name: against ``ca_file``
    only when given, else the system's CAs. There is no way to turn it off."""
    return ssl.create_default_context(cafile=ca_file or None)


class Mailer:
    """Sends one plain-text mail at a time."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.smtp_url = settings.get("SMTP_URL")
        self.target = parse_smtp_url(str(self.smtp_url)) if self.smtp_url else None
        self.ca_file: str | None = settings.get("SMTP_CA_FILE") or None
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
        domain = parseaddr(self.sender)[1].rpartition("@")[2] or socket.getfqdn()
        message["Message-ID"] = f"<{entropy.hex_id()}@{domain}>"
        message.set_content(body)
        suffix = f" ({ref})" if ref else ""
        if self.target is not None:
            self._smtp(self.target, message)
            log.info("mail %s sent over SMTP%s", kind, suffix)
        else:
            path = self._write(message)
            log.info("mail %s written to the outbox as %s%s", kind, path.name, suffix)

    def _write(self, message: EmailMessage) -> Path:
        self.outbox.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.outbox / f"{entropy.hex_id()}.eml"
        path.touch(mode=0o600)
        path.write_bytes(bytes(message))
        return path

    def _smtp(self, target: SmtpTarget, message: EmailMessage) -> None:
        try:
            with self._connect(target) as client:
                self._secure(client, target)
                if target.user is not None:
                    self._login(client, target)
                client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _text in exc.recipients.values()})
            raise MailError(f"{type(exc).__name__} {'/'.join(map(str, codes))}",
                            permanent=all(code >= 500 for code in codes)) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise _refused(f"{type(exc).__name__} {exc.smtp_code}",
                           "the credentials in DSAR_SMTP_URL were refused") from None
        except smtplib.SMTPResponseException as exc:
            raise MailError(f"{type(exc).__name__} {exc.smtp_code}") from None
        except ssl.SSLCertVerificationError as exc:
            what = exc.verify_message or "verification failed"
            raise _refused(f"certificate not trusted: {what}",
                           "it must name the host of DSAR_SMTP_URL and chain to the "
                           "system's CAs, or to DSAR_SMTP_CA_FILE's") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(type(exc).__name__) from None

    def _connect(self, target: SmtpTarget) -> smtplib.SMTP:
        if target.implicit_tls:
            return smtplib.SMTP_SSL(target.host, target.port, timeout=30,
                                    context=tls_context(self.ca_file))
        return smtplib.SMTP(target.host, target.port, timeout=30)

    def _secure(self, client: smtplib.SMTP, target: SmtpTarget) -> None:
        """STARTTLS on smtp:// when the server offers it; when it does not,
        go on in clear only if nothing needs TLS."""
        if target.implicit_tls or target.starttls == "off":
            return
        client.ehlo()
        if not client.has_extn("starttls"):
            if target.user is not None:
                raise _refused("STARTTLS not offered: the password was not sent in clear",
                               "the server must offer STARTTLS, or use smtps://")
            if target.needs_tls:
                raise _refused("STARTTLS not offered", "DSAR_SMTP_URL says ?starttls=required")
            return
        client.starttls(context=tls_context(self.ca_file))
        client.ehlo()

    def _login(self, client: smtplib.SMTP, target: SmtpTarget) -> None:
        """AUTH, only on an encrypted connection (the last line of defence)."""
        if not isinstance(client.sock, ssl.SSLSocket):
            raise _refused("not encrypted: the password was not sent in clear",
                           "DSAR_SMTP_URL")
        client.login(target.user or "", target.password)


def _refused(reason: str, hint: str) -> MailError:
    """A refusal the operator must fix (the setting named by ``hint``): logged
    as an error, retried meanwhile."""
    log.error("mail not handed over: %s (%s)", reason, hint)
    return MailError(reason)
