"""Mail over a real SMTP server as production runs it: STARTTLS or TLS from
the start on a certificate from a throwaway CA, AUTH with a user and password.

The password never crosses the network in clear (a server without STARTTLS
never sees an AUTH command), the certificate and the host name are always
verified (against DSAR_SMTP_CA_FILE here, never switched off), and a refusal
of the deployment (wrong password, no STARTTLS, untrusted certificate) leaves
the mail waiting in the outbox, not failed, until the operator fixes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask

from dsar import outbox
from dsar.config import ConfigError, load_settings
from dsar.database import utcnow
from dsar.mail import Mailer, MailError
from tests.support.app import SECRET
from tests.support.smtp import (  # noqa: F401 - fixtures
    PASSWORD,
    USER,
    Certificates,
    SmtpServer,
    make_certificates,
    make_smtp_server,
    smtp_certificates,
)
from tests.test_outbox import mails, rt_of

ALICE = "alice.tls@example.org"
WRONG = "wrong-password-4711"
SUBJECT, BODY = "Your verification code", "Your code is 314159.\n"

MakeServer = Callable[..., SmtpServer]


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No password and no address reaches a log line of dsar's."""
    caplog.set_level(logging.DEBUG)
    yield
    lines = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                      if not r.name.startswith("mail.log"))  # the test server's own log
    for secret in (PASSWORD, WRONG, ALICE, "alice.tls"):
        assert secret not in lines, f"{secret!r} reached a log line"


def mailer(url: str, tmp_path: Path, ca: Path | None = None) -> Mailer:
    return Mailer({"SMTP_URL": url, "SMTP_CA_FILE": str(ca) if ca else None,
                   "MAIL_FROM": "privacy@example.org", "OUTBOX_DIR": str(tmp_path / "outbox")})


def send(mail: Mailer) -> None:
    mail.send(ALICE, SUBJECT, BODY, kind="test-notice")


def refused(mail: Mailer) -> MailError:
    """The MailError of sending with ``mail``; it names no secret."""
    with pytest.raises(MailError) as caught:
        send(mail)
    error = caught.value
    for secret in (PASSWORD, WRONG, ALICE):
        assert secret not in str(error) and secret not in error.reason
    assert error.__cause__ is None  # no chained server text in a traceback
    assert error.__context__ is None or error.__suppress_context__
    return error


def nothing_reached(server: SmtpServer) -> None:
    assert server.auth_commands == [] and server.logins == [], "credentials were sent"
    assert server.received == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the outbox is not the point
def test_a_mail_is_delivered_over_starttls_with_auth(
        make_app: Callable[..., Flask], make_smtp_server: MakeServer,  # noqa: F811
        smtp_certificates: Certificates, tmp_path: Path, logged: None,  # noqa: F811
        mechanism: str) -> None:
    """The settings as an operator writes them: a user in the URL, no
    ?starttls (a user makes it required), the private CA in its setting."""
    server = make_smtp_server(tls=smtp_certificates, auth=True, mechanisms=(mechanism,))
    rt = rt_of(make_app(SMTP_URL=server.login_url(), SMTP_CA_FILE=str(smtp_certificates.ca),
                        MAIL_FROM="privacy@example.org", OUTBOX_DIR=str(tmp_path / "outbox")))
    with rt.transaction() as session:
        outbox.enqueue(session, rt, ALICE, SUBJECT, BODY, kind="test-notice")
    assert outbox.deliver_due(rt) == 1
    [delivery] = server.deliveries
    assert delivery.tls is not None and delivery.tls.startswith("TLSv1."), delivery.tls
    assert delivery.login == USER
    assert server.auth_commands and all(c.tls and c.mechanism == mechanism
                                        for c in server.auth_commands)
    assert server.logins == [(USER, True)]
    message = delivery.message
    assert (str(message["To"]), str(message["From"])) == (ALICE, "privacy@example.org")
    assert str(message["Subject"]) == SUBJECT
    assert message.get_content().splitlines() == BODY.splitlines()
    [sent] = mails(rt)
    assert sent.status == "sent" and sent.attempts == 1 and sent.last_error is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_wrong_password_is_refused_and_the_mail_waits_for_the_fix(
        make_app: Callable[..., Flask], make_smtp_server: MakeServer,  # noqa: F811
        smtp_certificates: Certificates, tmp_path: Path, logged: None,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    """Not permanent: the password is the deployment's fault, not the mail's.
    The mail is retried (content kept, encrypted) and goes once the operator
    has put the right password in and restarted; an error line says what to fix."""
    server = make_smtp_server(tls=smtp_certificates, auth=True)
    settings = {"SMTP_CA_FILE": str(smtp_certificates.ca), "OUTBOX_DIR": str(tmp_path / "o")}
    rt = rt_of(make_app(SMTP_URL=server.login_url(WRONG), **settings))
    with rt.transaction() as session:
        outbox.enqueue(session, rt, ALICE, SUBJECT, BODY, kind="test-notice")

    assert outbox.deliver_due(rt) == 0
    [waiting] = mails(rt)
    assert waiting.status == "pending" and waiting.attempts == 1 and waiting.sent_at is None
    assert waiting.last_error == "SMTPAuthenticationError 535"
    assert waiting.not_before > utcnow() and waiting.lease_owner is None
    assert waiting.recipient_ct is not None  # kept for the next try
    assert server.logins and not any(ok for _user, ok in server.logins)
    assert all(command.tls for command in server.auth_commands)
    assert server.received == []
    errors = [r.getMessage() for r in caplog.records
              if r.name == "dsar.mail" and r.levelno >= logging.ERROR]
    assert any("SMTPAuthenticationError 535" in e and "DSAR_SMTP_URL" in e for e in errors)

    fixed = rt_of(make_app(SMTP_URL=server.login_url(), **settings))  # same database
    assert outbox.deliver_due(fixed, now=waiting.not_before + timedelta(seconds=1)) == 1
    [delivery] = server.deliveries
    assert delivery.login == USER and delivery.tls is not None
    [sent] = mails(fixed)
    assert sent.status == "sent" and sent.attempts == 2 and sent.recipient_ct is None


def test_the_mailer_says_a_wrong_password_is_not_permanent(
        make_smtp_server: MakeServer, smtp_certificates: Certificates,  # noqa: F811
        tmp_path: Path, logged: None) -> None:
    server = make_smtp_server(tls=smtp_certificates, auth=True)
    error = refused(mailer(server.login_url(WRONG), tmp_path, smtp_certificates.ca))
    assert error.reason == "SMTPAuthenticationError 535" and not error.permanent


@pytest.mark.parametrize("query", ["", "starttls", "starttls=required", "starttls=auto"])
def test_credentials_are_never_sent_to_a_server_without_starttls(
        make_smtp_server: MakeServer, tmp_path: Path, logged: None,  # noqa: F811
        query: str) -> None:
    """The server would take the password in clear; dsar does not offer it."""
    server = make_smtp_server(auth=True, auth_in_clear=True)
    error = refused(mailer(server.login_url(query=query), tmp_path))
    assert error.reason == "STARTTLS not offered: the password was not sent in clear"
    assert not error.permanent
    nothing_reached(server)


def test_starttls_required_without_credentials_refuses_a_server_without_it(
        make_smtp_server: MakeServer, tmp_path: Path, logged: None) -> None:  # noqa: F811
    server = make_smtp_server()
    error = refused(mailer(f"{server.url}?starttls=required", tmp_path))
    assert error.reason == "STARTTLS not offered"
    assert server.received == []


@pytest.mark.parametrize(("query", "encrypted"), [("", True), ("?starttls=off", False)])
def test_without_credentials_starttls_is_used_when_offered(
        make_smtp_server: MakeServer, smtp_certificates: Certificates,  # noqa: F811
        tmp_path: Path, logged: None, query: str, encrypted: bool) -> None:
    """A relay that takes mail without a password: encrypted when it can be,
    in clear only when the URL says ?starttls=off."""
    server = make_smtp_server(tls=smtp_certificates)
    send(mailer(server.url + query, tmp_path, smtp_certificates.ca))
    [delivery] = server.deliveries
    assert (delivery.tls is not None) is encrypted and delivery.login is None


@pytest.mark.parametrize("trust", ["no CA file", "another CA", "a certificate for another name"])
@pytest.mark.parametrize("implicit_tls", [False, True], ids=["starttls", "smtps"])
def test_a_certificate_that_cannot_be_verified_is_refused(
        make_smtp_server: MakeServer, smtp_certificates: Certificates,  # noqa: F811
        tmp_path: Path, logged: None, trust: str, implicit_tls: bool) -> None:
    """Without a trusted CA (the system's do not know the throwaway one), or
    with a certificate for another host, nothing is sent: no password, no mail."""
    certificates, ca = smtp_certificates, None
    if trust == "another CA":
        ca = make_certificates(tmp_path / "other").ca
    elif trust == "a certificate for another name":
        certificates = make_certificates(tmp_path / "named", names=("mail.example.net",))
        ca = certificates.ca
    server = make_smtp_server(tls=certificates, auth=True, implicit_tls=implicit_tls)
    error = refused(mailer(server.login_url(), tmp_path, ca))
    assert error.reason.startswith("certificate not trusted: "), error.reason
    if trust == "a certificate for another name":
        assert "mismatch" in error.reason.lower(), error.reason
    assert not error.permanent
    nothing_reached(server)


def test_smtps_delivers_with_auth(make_smtp_server: MakeServer,  # noqa: F811
                                  smtp_certificates: Certificates,  # noqa: F811
                                  tmp_path: Path, logged: None) -> None:
    server = make_smtp_server(tls=smtp_certificates, auth=True, implicit_tls=True)
    assert server.login_url().startswith("smtps://")
    send(mailer(server.login_url(), tmp_path, smtp_certificates.ca))
    [delivery] = server.deliveries
    assert delivery.tls is not None and delivery.login == USER
    assert all(command.tls for command in server.auth_commands)
    assert delivery.message.get_content().splitlines() == BODY.splitlines()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("DSAR_SMTP_URL", f"smtp://{USER}:{WRONG}@mail:587?starttls=off", "in clear"),
    ("DSAR_SMTP_URL", "smtp://mail:25?starttls=perhaps", "auto, required or off"),
    ("DSAR_SMTP_URL", f"smtp://{USER}:{WRONG}@mail:587?verify=no", "the only option"),
    ("DSAR_SMTP_URL", f"smtps://{USER}:{WRONG}@mail?starttls=auto", "smtps:// is TLS"),
    ("DSAR_SMTP_URL", f"http://{USER}:{WRONG}@mail", "expected smtp://"),
    ("DSAR_SMTP_CA_FILE", "/nonexistent/ca.pem", "cannot load"),
])
def test_smtp_settings_are_checked_at_start(tmp_path: Path, name: str, value: str,
                                            message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"DSAR_SECRET_KEY": SECRET, name: value}, None, str(tmp_path))
    assert str(caught.value).startswith(name) and message in str(caught.value)
    assert WRONG not in str(caught.value)


def test_a_ca_file_without_a_certificate_stops_the_start(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="DSAR_SMTP_CA_FILE: cannot load"):
        load_settings({"DSAR_SECRET_KEY": SECRET, "DSAR_SMTP_CA_FILE": str(not_pem)}, None,
                      str(tmp_path))


def test_the_documented_urls_are_accepted(tmp_path: Path,
                                          smtp_certificates: Certificates) -> None:  # noqa: F811
    for url in ("smtp://mail:25", "smtp://user:password@mail:587?starttls",
                "smtp://user:password@mail:587", "smtps://user:password@mail",
                "smtp://relay?starttls=off"):
        settings = load_settings({"DSAR_SECRET_KEY": SECRET, "DSAR_SMTP_URL": url,
                                  "DSAR_SMTP_CA_FILE": str(smtp_certificates.ca)}, None,
                                 str(tmp_path))
        assert settings["SMTP_URL"] == url
