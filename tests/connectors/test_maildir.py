"""The maildir connector against a real Maildir built with the stdlib."""

from __future__ import annotations

import mailbox
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from marshmallow import ValidationError

from connectors.maildir import MaildirConnector
from dsar.connector import Action, Subject
from dsar.testing import ConnectorContract

ALICE = Subject({"email": {"alice@example.org"}})
BOB = Subject({"email": {"bob@example.org"}})
SUPPORT = "Acme Support <support@acme.test>"


def message(
    sender: str, to: str, subject: str, body: str, cc: str = "", html: bool = False
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = "Mon, 06 May 2024 10:00:00 +0000"
    msg["Message-ID"] = f"<{abs(hash((sender, subject)))}@acme.test>"
    msg.set_content(body)
    if html:
        msg.add_alternative(f"<p>{body}</p>", subtype="html")
    return msg


def add(box: mailbox.Maildir, msg: EmailMessage, subdir: str = "new", flags: str = "") -> str:
    md = mailbox.MaildirMessage(msg)
    md.set_subdir(subdir)
    if flags:
        md.set_flags(flags)
    return box.add(md)


def seed(path: Path) -> dict[str, tuple[str, str]]:
    """A support mailbox: INBOX plus an ``Archive`` Maildir++ folder."""
    root = mailbox.Maildir(str(path), create=True)
    archive = root.add_folder("Archive")
    keys = {
        "sent": (
            "INBOX",
            add(
                root,
                message("Alice A <alice@example.org>", SUPPORT, "Refund?", "Where is my refund?"),
            ),
        ),
        "to_alice": (
            "INBOX",
            add(
                root,
                message(
                    SUPPORT,
                    "Alice A <alice@example.org>",
                    "Re: Refund?",
                    "It is on its way.",
                    cc="carol@example.org",
                    html=True,
                ),
            ),
        ),
        "cc_alice": (
            "INBOX",
            add(
                root,
                message(
                    "bob@example.org",
                    SUPPORT,
                    "Complaint",
                    "Cc my friend.",
                    cc="ALICE@Example.org, dave@example.org",
                ),
            ),
        ),
        "unrelated": (
            "INBOX",
            add(root, message("carol@example.org", SUPPORT, "Hello", "Unrelated.")),
        ),
        "bob_only": ("INBOX", add(root, message("bob@example.org", SUPPORT, "Order", "My order."))),
        "archived": (
            "Archive",
            add(
                archive,
                message(SUPPORT, "alice@example.org, erin@example.org", "Old", "Archived reply."),
                "cur",
                "RS",
            ),
        ),
        "alice_to_bob": (
            "Archive",
            add(archive, message("alice@example.org", "bob@example.org", "Hi", "Hi Bob.")),
        ),
    }
    return keys


def parse(path: Path, folder: str, key: str) -> EmailMessage:
    root = mailbox.Maildir(str(path), create=False)
    box = root if folder == "INBOX" else root.get_folder(folder)
    return BytesParser(policy=policy.default).parsebytes(box.get_bytes(key))


def messages(path: Path, folder: str) -> list[mailbox.MaildirMessage]:
    root = mailbox.Maildir(str(path), create=False)
    box = root if folder == "INBOX" else root.get_folder(folder)
    return [box.get_message(k) for k in box.iterkeys()]


def make(path: Path, others: str = "redact") -> MaildirConnector:
    return MaildirConnector(
        "support-mail", MaildirConnector.load_config({"path": str(path), "others": others})
    )


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    path = tmp_path / "Maildir"
    return path, seed(path)


class TestMaildirContract(ConnectorContract):
    @pytest.fixture
    def connector(self, store: tuple[Path, dict]) -> MaildirConnector:
        return make(store[0])

    @pytest.fixture
    def subject(self) -> Subject:
        return ALICE

    @pytest.fixture
    def other_subject(self) -> Subject:
        return BOB

    @pytest.fixture
    def shared_refs(self, store: tuple[Path, dict]) -> set[tuple[str, str]]:
        return {store[1]["cc_alice"], store[1]["alice_to_bob"]}

    @pytest.fixture
    def unreachable_connector(self, tmp_path: Path) -> MaildirConnector:
        return make(tmp_path / "no-such-maildir")


def test_find_records(store: tuple[Path, dict]) -> None:
    path, keys = store
    found = {r.ref: r for r in make(path).find(ALICE)}
    expected = {keys[n] for n in ("sent", "to_alice", "cc_alice", "archived", "alice_to_bob")}
    assert set(found) == expected
    record = found[keys["to_alice"]]
    assert record.category == "email"
    assert record.fields["body"].strip() == "It is on its way."
    assert record.fields["cc"] == "carol@example.org"
    assert set(record.fields) == {
        "from",
        "to",
        "cc",
        "reply_to",
        "subject",
        "date",
        "message_id",
        "body",
    }


def test_plan(store: tuple[Path, dict]) -> None:
    path, keys = store
    items = {i.ref: i for i in make(path).plan_erasure(ALICE).items}
    assert items[keys["sent"]].action is Action.DELETE
    assert items[keys["cc_alice"]].action is Action.MASK
    assert items[keys["cc_alice"]].detail == "address replaced by redacted@invalid in Cc"
    assert items[keys["to_alice"]].detail == "address replaced by redacted@invalid in To"


def test_redact_rewrites_headers_and_keeps_the_rest(store: tuple[Path, dict]) -> None:
    path, keys = store
    connector = make(path)
    result = connector.erase(connector.plan_erasure(ALICE))
    assert (result.deleted, result.masked, result.kept) == (2, 3, 0)
    inbox = {str(m["Subject"]): m for m in messages(path, "INBOX")}
    assert "Refund?" not in inbox, "the subject's sent mail is gone"
    reply = inbox["Re: Refund?"]
    assert reply["To"] == "redacted@invalid" and reply["Cc"] == "carol@example.org"
    parsed = BytesParser(policy=policy.default).parsebytes(reply.as_bytes())
    assert parsed.get_body(("plain",)).get_content().strip() == "It is on its way."
    assert parsed.get_body(("html",)).get_content().strip() == "<p>It is on its way.</p>"
    assert inbox["Complaint"]["Cc"] == "redacted@invalid, dave@example.org"
    assert inbox["Complaint"]["From"] == "bob@example.org"
    assert "alice" not in reply.as_string().lower()
    assert inbox["Hello"].get_payload() == "Unrelated.\n"


def test_remove_drops_address_and_empty_headers(store: tuple[Path, dict]) -> None:
    path, _ = store
    connector = make(path, "remove")
    plan = connector.plan_erasure(ALICE)
    assert any(i.detail == "address removed from Cc" for i in plan.items)
    connector.erase(plan)
    inbox = {str(m["Subject"]): m for m in messages(path, "INBOX")}
    assert inbox["Complaint"]["Cc"] == "dave@example.org"
    assert inbox["Re: Refund?"]["To"] is None
    archived = {str(m["Subject"]): m for m in messages(path, "Archive")}
    assert archived["Old"]["To"] == "erin@example.org"
    assert list(connector.find(ALICE)) == []


def test_rewrite_keeps_flags_and_subdir(store: tuple[Path, dict]) -> None:
    path, keys = store
    connector = make(path)
    connector.erase(connector.plan_erasure(ALICE))
    archived = messages(path, "Archive")
    assert [str(m["Subject"]) for m in archived] == ["Old"], (
        "the sent message is gone, the reply stays"
    )
    assert archived[0].get_subdir() == "cur" and archived[0].get_flags() == "RS"
    assert archived[0]["To"] == "redacted@invalid, erin@example.org"
    root = mailbox.Maildir(str(path), create=False)
    assert keys["archived"][1] not in root.get_folder("Archive"), "the old version was removed"


def test_keep_mode_holds_others_mail(store: tuple[Path, dict]) -> None:
    path, keys = store
    connector = make(path, "keep")
    plan = connector.plan_erasure(ALICE)
    held = {i.ref for i in plan.items if i.action is Action.KEEP}
    assert held == {keys["to_alice"], keys["cc_alice"], keys["archived"]}
    assert all("others-mail" in i.detail for i in plan.items if i.action is Action.KEEP)
    result = connector.erase(plan)
    assert (result.deleted, result.kept) == (2, 3)
    assert {r.ref for r in connector.find(ALICE)} == held
    assert parse(path, *keys["cc_alice"])["Cc"] == "ALICE@Example.org, dave@example.org"


def test_plan_holds_no_addresses(store: tuple[Path, dict]) -> None:
    plan = make(store[0]).plan_erasure(ALICE)
    assert "alice@example.org" not in repr(plan)


def test_check_rejects_a_plain_directory(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    result = make(tmp_path / "plain").check()
    assert not result.ok and "Maildir" in result.message


def test_config_rejects_bad_others(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        MaildirConnector.load_config({"path": str(tmp_path), "others": "shred"})


def test_erase_skips_vanished_messages_and_folders(store: tuple[Path, dict]) -> None:
    path, keys = store
    connector = make(path)
    plan = connector.plan_erasure(ALICE)
    root = mailbox.Maildir(str(path), create=False)
    root.discard(keys["sent"][1])
    for key in list(root.get_folder("Archive").iterkeys()):
        root.get_folder("Archive").discard(key)
    root.remove_folder("Archive")
    result = connector.erase(plan)
    assert (result.deleted, result.masked) == (0, 2)
    assert list(connector.find(ALICE)) == []


def test_prefilter_keeps_odd_but_valid_address_forms(tmp_path: Path) -> None:
    """The cheap pre-filter must not hide a message whose header writes the
    address in upper case, inside a comment-laden or folded header."""
    box = mailbox.Maildir(tmp_path / "odd", create=True)
    raw = (b"From: Someone <someone@example.com>\r\n"
           b"To: =?utf-8?q?Zo=C3=AB_Example?= (work)\r\n"
           b" <ZOE.EXAMPLE@Example.org>, other@example.com\r\n"
           b"Subject: hello\r\n\r\nhi\r\n")
    box.add(mailbox.MaildirMessage(raw))
    connector = MaildirConnector("mail", MaildirConnector.load_config({"path": str(box._path)}))
    found = list(connector.find(Subject({"email": {"zoe.example@example.org"}})))
    assert len(found) == 1
