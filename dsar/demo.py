"""Demo data for ``dsar demo``: three real stores and the connector file for them.

:func:`seed` writes ``<instance>/demo/`` with a CRM database (``crm.sqlite``), a
support Maildir (``mail/``, with a ``.Support`` folder) and a Slack export
(``chat/``), and the default connector file ``<instance>/connectors.toml`` with
the instances ``crm`` (sql), ``mail`` (maildir) and ``chat`` (slack_export).

Every customer is in all three stores; two staff are in mail and chat only. All
people are made up (``example.org``/``example.com``, UK drama phone numbers). No
randomness: only Maildir file names (the stdlib's choice) differ between runs.
"""

from __future__ import annotations

import json
import mailbox
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, Numeric, String, Table
from sqlalchemy.engine import create_engine

DEMO_DIR, MARKER, CONNECTOR_FILE = "demo", "demo.json", "connectors.toml"
HEADER = "# Written by `dsar demo`"  # a connector file without it is never overwritten
MAX_CUSTOMERS = 500
BASE = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)

FIRST = ("Ada", "Bram", "Cleo", "Dario", "Elin", "Fenna", "Goran", "Hedda", "Ilse", "Joost")
LAST = ("Quillby", "Marrowfield", "Vantwest", "Ashgrove-Pell", "Tallowmere", "Fenwright",
        "Oakhollow", "Pebbleton", "Larkmoor", "Dunmarrow", "Heathcote-Vale")
CITIES = ("Utrecht", "Lyon", "Porto", "Leeds", "Graz", "Aarhus", "Bologna", "Ghent")
STATUSES = ("delivered", "shipped", "delivered", "returned", "processing")
TOPICS = (  # (subject, question, answer) of support mail
    ("Where is my order?", "my order #{order} has not arrived yet. Could you check where it is?",
     "your parcel left our warehouse yesterday; it should reach you within two working days."),
    ("Damaged item", "the lamp in order #{order} arrived with a cracked shade. Can I return it?",
     "sorry about that! A prepaid return label is attached; we refund as soon as it is back."),
    ("New delivery address", "I have moved. Please send order #{order} to my new address.",
     "done: the courier has the new address, and your account is updated too."),
    ("Invoice question", "the invoice for order #{order} shows the wrong VAT rate, I think.",
     "you are right; a corrected invoice for order #{order} follows today."),
)
QUESTIONS = ("Does anyone know if the oak shelves fit in a 30 cm alcove?",
             "Tips for cleaning the linen cushion covers?",
             "Is the spring sale also on the garden range?")
CHANNELS = (("general", "Everyone, everything"), ("help", "Ask the community and staff"),
            ("ideas", "What should we make next?"))


class DemoError(Exception):
    """The demo cannot be seeded here; the message says why."""


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    phone: str = ""
    city: str = ""

    @property
    def first(self) -> str:
        return self.name.split()[0]

    @property
    def address(self) -> str:
        return formataddr((self.name, self.email))


STAFF = (Person("Mira Stillwater", "mira.stillwater@example.com"),
         Person("Otto Brambleby", "otto.brambleby@example.com"))
SUPPORT = Person("Larkspur Goods Support", "support@example.com")


@dataclass(frozen=True)
class DemoInfo:
    """Where the demo lives and who is in it."""

    root: Path
    crm: Path
    mail: Path
    chat: Path
    connector_file: Path
    emails: list[str]  # the demo customers, in all three stores
    staff: list[str]  # in mail and chat only
    seeded: bool  # False: the stores were there already and were left as they are


def customers_of(count: int) -> list[Person]:
    """The first ``count`` demo customers, always the same ones."""
    people = []
    for i in range(count):
        first, last = FIRST[i % len(FIRST)], LAST[(i + i // len(FIRST)) % len(LAST)]
        suffix = str(i // len(FIRST) + 1) if i >= len(FIRST) else ""
        people.append(Person(f"{first} {last}", f"{first}.{last}{suffix}@example.org".lower(),
                             f"+44 7700 900{i:03d}", CITIES[i % len(CITIES)]))
    return people


def seed(instance: Path, *, customers: int = 8, force: bool = False) -> DemoInfo:
    """Create the demo stores and the connector file under ``instance``.

    Already seeded and not ``force``: the stores and the connector file are left
    as they are (erasures made since stay made). ``force`` deletes
    ``instance/demo``, seeds again and rewrites the connector file.
    Raises :class:`DemoError` rather than overwrite a connector file that
    ``dsar demo`` did not write.
    """
    if not 2 <= customers <= MAX_CUSTOMERS:
        raise ValueError(f"customers must be between 2 and {MAX_CUSTOMERS}")
    instance = instance.absolute()  # the connector file holds absolute paths
    root, connector_file = instance / DEMO_DIR, instance / CONNECTOR_FILE
    if connector_file.exists() and not connector_file.read_text("utf-8").startswith(HEADER):
        raise DemoError(f"{connector_file} exists and was not written by dsar demo; "
                        "move it away to seed the demo")
    seeded = force or not (root / MARKER).exists()
    if seeded:
        _build(instance, root, customers_of(customers))
    known = json.loads((root / MARKER).read_text("utf-8"))
    info = DemoInfo(root, root / "crm.sqlite", root / "mail", root / "chat", connector_file,
                    known["customers"], known["staff"], seeded)
    if seeded or not connector_file.exists():  # keep edits made to the demo's own file
        connector_file.write_text(_connector_toml(info), "utf-8")
    return info


def _build(instance: Path, root: Path, people: list[Person]) -> None:
    """Seed into a scratch folder, then move it in place: never half a demo."""
    scratch = instance / f".{DEMO_DIR}-partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    _seed_crm(scratch / "crm.sqlite", people)
    _seed_mail(scratch / "mail", people)
    _seed_chat(scratch / "chat", people)
    marker = {"customers": [p.email for p in people], "staff": [p.email for p in STAFF]}
    (scratch / MARKER).write_text(json.dumps(marker, indent=2), "utf-8")
    shutil.rmtree(root, ignore_errors=True)
    scratch.rename(root)


# --- CRM ----------------------------------------------------------------------------------

CRM = MetaData()
Table("customers", CRM, Column("id", Integer, primary_key=True), Column("email", String(254)),
      Column("name", String(200)), Column("phone", String(40)),
      Column("city", String(100), nullable=False), Column("created_at", DateTime, nullable=False),
      Column("marketing_opt_in", Boolean, nullable=False))
Table("orders", CRM, Column("id", Integer, primary_key=True),
      Column("customer_email", String(254), nullable=False),
      Column("placed_at", DateTime, nullable=False),
      Column("total", Numeric(10, 2), nullable=False), Column("status", String(20), nullable=False))
Table("invoices", CRM, Column("id", Integer, primary_key=True),
      Column("billing_email", String(254), nullable=False),
      Column("amount", Numeric(10, 2), nullable=False),
      Column("issued_at", DateTime, nullable=False))


def _crm_rows(people: list[Person]) -> dict[str, list[dict[str, Any]]]:
    """Rows by table; datetimes in UTC without tzinfo, as SQLite stores them."""
    base = BASE.replace(tzinfo=None)
    customers = [{"id": i + 1, "email": p.email, "name": p.name, "phone": p.phone,
                  "city": p.city, "created_at": base + timedelta(days=3 * i),
                  "marketing_opt_in": i % 3 != 1} for i, p in enumerate(people)]
    orders: list[dict[str, Any]] = [{"id": 1000 + 2 * i + k, "customer_email": p.email,
               "placed_at": base + timedelta(days=3 * i + 20 * k + 5),
               "total": Decimal(1990 + (737 * i + 411 * k) % 12000) / 100,
               "status": STATUSES[(2 * i + k) % len(STATUSES)]}
              for i, p in enumerate(people) for k in range(2)]
    invoices = [{"id": 5000 + n, "billing_email": o["customer_email"], "amount": o["total"],
                 "issued_at": o["placed_at"] + timedelta(days=1)}
                for n, o in enumerate(o for o in orders if o["status"] != "processing")]
    return {"customers": customers, "orders": orders, "invoices": invoices}


def _seed_crm(path: Path, people: list[Person]) -> None:
    engine = create_engine(f"sqlite:///{path}")
    try:
        CRM.create_all(engine)
        with engine.begin() as conn:
            for name, rows in _crm_rows(people).items():
                conn.execute(CRM.tables[name].insert(), rows)
    finally:
        engine.dispose()


# --- mail ---------------------------------------------------------------------------------

def _email(n: int, sender: Person, to: Person, subject: str, body: str, when: datetime,
           cc: tuple[Person, ...] = (), reply_to: EmailMessage | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender.address, to.address, subject
    if cc:
        msg["Cc"] = ", ".join(p.address for p in cc)
    msg["Date"], msg["Message-ID"] = format_datetime(when), f"<demo-{n}@example.com>"
    if reply_to is not None:
        msg["In-Reply-To"] = msg["References"] = reply_to["Message-ID"]
    msg.set_content(body)
    return msg


def _file(box: mailbox.Maildir, msg: EmailMessage, unread: bool = False) -> None:
    stored = mailbox.MaildirMessage(msg)
    stored.set_subdir("new" if unread else "cur")
    stored.set_flags("" if unread else "S")
    box.add(stored)


def _seed_mail(path: Path, people: list[Person]) -> None:
    """INBOX: what customers wrote (the two newest unread); .Support: the replies."""
    inbox = mailbox.Maildir(str(path), create=True)
    support = inbox.add_folder("Support")
    for i, person in enumerate(people):
        other, agent = people[(i + 1) % len(people)], STAFF[i % len(STAFF)]
        subject, question, answer = TOPICS[i % len(TOPICS)]
        order, when = 1000 + 2 * i, BASE + timedelta(days=3 * i + 30, hours=i % 7)
        cc = (other,) if i % 3 == 0 else ()  # "my partner shares the account"
        asked = _email(3 * i, person, SUPPORT, f"{subject} (order #{order})",
                       f"Hello,\n\n{question.format(order=order)}\n\n"
                       f"Kind regards,\n{person.name}\n", when, cc)
        _file(inbox, asked, unread=i >= len(people) - 2)
        _file(support, _email(3 * i + 1, agent, person, f"Re: {asked['Subject']}",
                              f"Hi {person.first},\n\n{answer.format(order=order)}\n\n"
                              f"Best wishes,\n{agent.name}\nLarkspur Goods\n",
                              when + timedelta(hours=3), (*cc, SUPPORT), reply_to=asked))
        if i % 2 == 1:
            _file(inbox, _email(3 * i + 2, person, other, "Joint order?",
                                f"Hi {other.first},\n\nshall we combine our next orders to "
                                "save on delivery? I have copied support to ask if that "
                                f"works.\n\n{person.first}\n", when + timedelta(days=1),
                                (SUPPORT,)))
    _file(support, _email(3 * len(people), STAFF[0], STAFF[1], "Handover for next week",
                          "Hi Otto,\n\nall open tickets are answered and the courier issue "
                          "is solved.\n\nMira\n", BASE + timedelta(days=40), (SUPPORT,)))


# --- chat ---------------------------------------------------------------------------------

def _slack_user(uid: str, person: Person, staff: bool) -> dict[str, Any]:
    first, _, last = person.name.partition(" ")
    return {"id": uid, "team_id": "T0DEMO", "name": person.email.split("@")[0], "deleted": False,
            "real_name": person.name, "tz": "Europe/Amsterdam", "tz_label":
            "Central European Time", "tz_offset": 3600, "is_admin": staff, "is_bot": False,
            "profile": {"title": "Customer care, Larkspur Goods" if staff else "",
                        "phone": person.phone, "real_name": person.name, "display_name": first,
                        "first_name": first, "last_name": last, "email": person.email,
                        "team": "T0DEMO"}}


class _Chat:
    """Messages by (channel, day), with unique timestamps."""

    def __init__(self) -> None:
        self.days: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.count = 0

    def post(self, channel: str, when: datetime, user: str, text: str,
             **extra: Any) -> dict[str, Any]:
        self.count += 1
        msg = {"type": "message", "user": user, "text": text,
               "ts": f"{int(when.timestamp())}.{self.count:06d}", **extra}
        self.days.setdefault((channel, when.date().isoformat()), []).append(msg)
        return msg

    def reply(self, parent: dict[str, Any], channel: str, when: datetime, user: str,
              text: str) -> None:
        ts = self.post(channel, when, user, text, thread_ts=parent["ts"],
                       parent_user_id=parent["user"])["ts"]
        parent.update(thread_ts=parent["ts"], reply_count=1, reply_users=[user],
                      reply_users_count=1, latest_reply=ts, replies=[{"user": user, "ts": ts}])


def _seed_chat(path: Path, people: list[Person]) -> None:
    """#general, #help and #ideas; staff answer questions in threads."""
    staff_ids = [f"US{j + 1:03d}" for j in range(len(STAFF))]
    ids = [f"UC{i + 1:04d}" for i in range(len(people))]
    chat = _Chat()
    welcome = chat.post("general", BASE, staff_ids[0],
                        "Welcome to the Larkspur Goods community! Say hi :wave:")
    welcome["reactions"] = [{"name": "wave", "users": ids[:5], "count": len(ids[:5])}]
    for i, (uid, person) in enumerate(zip(ids, people, strict=True)):
        when = BASE + timedelta(days=2 * i + 1, hours=1 + i % 6)
        chat.post("general", when, uid, f"Hi all, {person.first} from {person.city} here!")
        question = chat.post("help", when + timedelta(hours=1), uid, QUESTIONS[i % len(QUESTIONS)],
                             reactions=[{"name": "eyes", "users": [ids[(i + 1) % len(ids)]],
                                         "count": 1}])
        chat.reply(question, "help", when + timedelta(hours=2), staff_ids[i % len(staff_ids)],
                   f"Good question, {person.first}! The product page has the details; "
                   "send us a DM if anything is unclear.")
        if i % 3 == 2:
            chat.post("ideas", when + timedelta(hours=5), uid,
                      "Could you offer refill packs for the candle range?")
    users = [_slack_user(u, p, True) for u, p in zip(staff_ids, STAFF, strict=True)]
    users += [_slack_user(u, p, False) for u, p in zip(ids, people, strict=True)]
    channels = [{"id": f"C{n + 1:08d}", "name": name, "created": int(BASE.timestamp()),
                 "creator": staff_ids[0], "is_archived": False, "is_general": n == 0,
                 "members": staff_ids + ids, "pins": [],
                 "topic": {"value": "", "creator": "", "last_set": 0},
                 "purpose": {"value": purpose, "creator": staff_ids[0], "last_set": 0}}
                for n, (name, purpose) in enumerate(CHANNELS)]
    path.mkdir()
    _write_json(path / "users.json", users)
    _write_json(path / "channels.json", channels)
    for (channel, day), messages in chat.days.items():
        (path / channel).mkdir(exist_ok=True)
        _write_json(path / channel / f"{day}.json", messages)


def _write_json(path: Path, data: Any) -> None:
    """Slack's own layout: indent 4, UTF-8."""
    path.write_text(json.dumps(data, indent=4, ensure_ascii=False), "utf-8")


# --- connector file -----------------------------------------------------------------------

def _connector_toml(info: DemoInfo) -> str:
    def q(value: object) -> str:  # a TOML basic string (JSON's escapes are valid TOML)
        return json.dumps(str(value))

    return f"""{HEADER} for the demo stores in {info.root}.
# `dsar demo --force` rewrites it; replace it with your own to use real stores.

[connectors.crm]
type = "sql"
label = "Customer accounts and orders"   # what requesters read; never the name "crm"
url = {q(f"sqlite:///{info.crm}")}

[connectors.crm.holds]
tax-records = "invoices are kept 10 years (tax law)"

# what a requester reads about the records a hold keeps (the erasure notice)
[holds.tax-records]
requester = "Your invoices: tax law requires us to keep them for 10 years, for nothing else."

[[connectors.crm.tables]]
name = "customers"
identity = {{ email = "email", phone = "phone" }}
erase = "mask"                      # the row stays for statistics (city, dates)
columns = {{ email = "null", name = "null", phone = "null" }}

[[connectors.crm.tables]]
name = "orders"
category = "orders"
identity = {{ email = "customer_email" }}
erase = "delete"

[[connectors.crm.tables]]
name = "invoices"
category = "billing"
identity = {{ email = "billing_email" }}
erase = "keep"
hold = "tax-records"

[connectors.mail]
type = "maildir"
label = "Emails with our support team"
path = {q(info.mail)}
others = "redact"

[connectors.chat]
type = "slack_export"
label = "Our community chat"
path = {q(info.chat)}
"""
