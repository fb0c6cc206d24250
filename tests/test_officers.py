"""Officer accounts, both factors, sessions and sign-in throttling, on a
moved clock: the rules a regulator asks about ("who approved this erasure?")
and an attacker pushes on."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dsar.clock import MovableClock
from dsar.models import AuditEvent, Officer, OfficerStatus, SignInThrottle
from dsar.officers import accounts, factors, sessions, signin
from dsar.officers.accounts import OfficerError
from dsar.officers.signin import Outcome
from dsar.runtime import Runtime

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EMAIL = "Dana.Officer@Example.org"
PASSWORD = "correct horse battery staple"
HERE = "192.0.2.10"


def invite(rt: Runtime, email: str = EMAIL, role: str = "reviewer") -> tuple[str, str]:
    with rt.transaction() as session:
        invitation = accounts.create(session, rt, email, role, actor="operator:test")
    return invitation.officer_id, invitation.url.rsplit("/", 1)[1]


def set_up(rt: Runtime, token: str, secret: str | None = None) -> tuple[str, list[str]]:
    secret = secret or factors.new_totp_secret()
    with rt.transaction() as session:
        officer = accounts.by_setup_link(session, rt, token)
        assert officer is not None
        codes = accounts.set_up(session, rt, officer, PASSWORD, secret,
                                pyotp.TOTP(secret).at(rt.now()))
    return secret, codes


def officer(rt: Runtime, officer_id: str) -> Officer:
    with rt.transaction() as session:
        found = session.get(Officer, officer_id)
        assert found is not None
        return found


def held(session: Session, officer_id: str) -> Officer:
    found = session.get(Officer, officer_id)
    assert found is not None
    return found


def trail(rt: Runtime) -> list[tuple[str, str, dict[str, Any]]]:
    with rt.transaction() as session:
        return [(e.action, e.actor, json.loads(e.details)) for e in session.scalars(
            select(AuditEvent).order_by(AuditEvent.seq))]


@pytest.fixture
def clocked(rt: Runtime) -> Runtime:
    rt.clock = MovableClock(START)
    return rt


@pytest.fixture
def active(clocked: Runtime) -> tuple[Runtime, str, str, list[str]]:
    """An active reviewer: (rt, officer id, TOTP secret, recovery codes)."""
    officer_id, token = invite(clocked)
    clocked.clock.advance(minutes=2)  # type: ignore[attr-defined]
    secret, codes = set_up(clocked, token)
    return clocked, officer_id, secret, codes


def next_code(rt: Runtime, secret: str) -> str:
    """The code of the next time step (the one just used is spent)."""
    rt.clock.advance(seconds=30)  # type: ignore[attr-defined]
    return pyotp.TOTP(secret).at(rt.now())


# --- accounts -----------------------------------------------------------------------


def test_an_invitation_is_a_link_valid_24_hours_used_once(clocked: Runtime) -> None:
    officer_id, token = invite(clocked)
    with clocked.transaction() as session:
        invited = session.get(Officer, officer_id)
        assert invited is not None and invited.status == OfficerStatus.INVITED
        assert invited.setup_expires_at == START + timedelta(hours=24)
        assert accounts.email_of(clocked, invited) == EMAIL
    clocked.clock.advance(hours=24)  # type: ignore[attr-defined]
    with clocked.transaction() as session:
        assert accounts.by_setup_link(session, clocked, token) is not None  # to the instant
        assert accounts.by_setup_link(session, clocked, token + "x") is None
    clocked.clock.advance(seconds=1)  # type: ignore[attr-defined]
    with clocked.transaction() as session:
        assert accounts.by_setup_link(session, clocked, token) is None


def test_a_new_link_replaces_the_old_one(clocked: Runtime) -> None:
    officer_id, old = invite(clocked)
    with clocked.transaction() as session:
        again = accounts.invite_again(session, clocked, held(session, officer_id),
                                      actor="operator:test")
    new = again.url.rsplit("/", 1)[1]
    with clocked.transaction() as session:
        assert accounts.by_setup_link(session, clocked, old) is None
        assert accounts.by_setup_link(session, clocked, new) is not None


def test_setting_up_enrols_both_factors_and_gives_ten_recovery_codes(clocked: Runtime) -> None:
    officer_id, token = invite(clocked)
    secret, codes = set_up(clocked, token)
    assert len(codes) == 10 == len(set(codes))
    done = officer(clocked, officer_id)
    assert done.status == OfficerStatus.ACTIVE and done.setup_digest is None
    assert done.password_hash and done.password_hash.startswith("$argon2id$")
    assert secret.encode() not in (done.totp_secret_ct or b"")  # stored encrypted
    with clocked.transaction() as session:  # the link is spent
        assert accounts.by_setup_link(session, clocked, token) is None
    actions = [(a, actor) for a, actor, _ in trail(clocked)]
    assert actions == [("officer.created", "operator:test"),
                       ("officer.enrolled", f"officer:{officer_id}")]


@pytest.mark.parametrize(("password", "problem"), [
    ("short pass", "at least 12"),
    ("x" * 257, "at most 256"),
    (EMAIL.lower(), "email address"),
])
def test_a_weak_password_is_refused_at_set_up(clocked: Runtime, password: str,
                                              problem: str) -> None:
    _, token = invite(clocked)
    secret = factors.new_totp_secret()
    with clocked.transaction() as session:
        invited = accounts.by_setup_link(session, clocked, token)
        assert invited is not None
        with pytest.raises(OfficerError, match=problem):
            accounts.set_up(session, clocked, invited, password, secret,
                            pyotp.TOTP(secret).at(clocked.now()))


def test_set_up_needs_a_code_from_the_app_just_enrolled(clocked: Runtime) -> None:
    officer_id, token = invite(clocked)
    secret = factors.new_totp_secret()
    with clocked.transaction() as session:
        invited = accounts.by_setup_link(session, clocked, token)
        assert invited is not None
        wrong = pyotp.TOTP(factors.new_totp_secret()).at(clocked.now())
        with pytest.raises(OfficerError, match="not right"):
            accounts.set_up(session, clocked, invited, PASSWORD, secret, wrong)
    assert officer(clocked, officer_id).status == OfficerStatus.INVITED


def test_one_account_per_address_and_known_roles_only(clocked: Runtime) -> None:
    invite(clocked)
    with clocked.transaction() as session, pytest.raises(OfficerError, match="exists"):
        accounts.create(session, clocked, " dana.officer@example.ORG ", "auditor", actor="t")
    with clocked.transaction() as session, pytest.raises(OfficerError, match="unknown role"):
        accounts.create(session, clocked, "eve@example.org", "root", actor="t")
    with clocked.transaction() as session, pytest.raises(OfficerError, match="not an email"):
        accounts.create(session, clocked, "eve", "auditor", actor="t")


def test_the_trail_names_officers_by_id_never_by_address(
        active: tuple[Runtime, str, str, list[str]]) -> None:
    rt, officer_id, secret, _ = active
    signin.sign_in(rt, EMAIL, PASSWORD, next_code(rt, secret), HERE)
    signin.sign_in(rt, EMAIL, "wrong password!", next_code(rt, secret), HERE)
    with rt.transaction() as session:
        accounts.set_role(session, rt, held(session, officer_id), "admin", actor="operator:test")
    with rt.transaction() as session:
        text = " ".join(f"{e.actor} {e.details}" for e in session.scalars(select(AuditEvent)))
    assert officer_id in text
    assert "dana" not in text.lower() and "example.org" not in text.lower()


# --- signing in ---------------------------------------------------------------------


def test_both_factors_open_a_new_session_each_time(
        active: tuple[Runtime, str, str, list[str]]) -> None:
    rt, officer_id, secret, _ = active
    first = signin.sign_in(rt, EMAIL.upper(), PASSWORD, next_code(rt, secret), HERE)
    second = signin.sign_in(rt, EMAIL, PASSWORD, next_code(rt, secret), HERE)
    assert first.outcome == second.outcome == Outcome.SIGNED_IN
    assert first.token and second.token and first.token != second.token
    with rt.transaction() as session:
        found = sessions.resolve(session, rt, first.token)
        assert found is not None and found.id == officer_id
    assert trail(rt)[-1] == ("officer.signed_in", f"officer:{officer_id}",
                             {"officer": officer_id, "factor": "totp"})


def test_a_totp_code_is_good_once(active: tuple[Runtime, str, str, list[str]]) -> None:
    rt, _, secret, _ = active
    code = next_code(rt, secret)
    assert signin.sign_in(rt, EMAIL, PASSWORD, code, HERE).outcome == Outcome.SIGNED_IN
    assert signin.sign_in(rt, EMAIL, PASSWORD, code, HERE).outcome == Outcome.REFUSED
    # nor an older one still inside the drift window
    rt.clock.advance(seconds=30)  # type: ignore[attr-defined]
    assert signin.sign_in(rt, EMAIL, PASSWORD, code, HERE).outcome == Outcome.REFUSED


def test_the_set_up_code_cannot_sign_in(clocked: Runtime) -> None:
    _, token = invite(clocked)
    secret = factors.new_totp_secret()
    code = pyotp.TOTP(secret).at(clocked.now())
    with clocked.transaction() as session:
        invited = accounts.by_setup_link(session, clocked, token)
        assert invited is not None
        accounts.set_up(session, clocked, invited, PASSWORD, secret, code)
    assert signin.sign_in(clocked, EMAIL, PASSWORD, code, HERE).outcome == Outcome.REFUSED


@pytest.mark.parametrize(("offset", "accepted"), [
    (-60, False), (-30, True), (0, True), (30, True), (60, False)])
def test_a_code_one_step_early_or_late_is_accepted(
        active: tuple[Runtime, str, str, list[str]], offset: int, accepted: bool) -> None:
    rt, _, secret, _ = active
    rt.clock.advance(minutes=5)  # type: ignore[attr-defined]
    code = pyotp.TOTP(secret).at(rt.now() + timedelta(seconds=offset))
    outcome = signin.sign_in(rt, EMAIL, PASSWORD, code, HERE).outcome
    assert (outcome == Outcome.SIGNED_IN) is accepted


def test_a_recovery_code_is_good_once(active: tuple[Runtime, str, str, list[str]]) -> None:
    rt, officer_id, _, codes = active
    used = signin.sign_in(rt, EMAIL, PASSWORD, codes[3].upper().replace("-", " "), HERE)
    assert used.outcome == Outcome.SIGNED_IN and used.recovery_left == 9
    assert signin.sign_in(rt, EMAIL, PASSWORD, codes[3], HERE).outcome == Outcome.REFUSED
    actions = [a for a, _, _ in trail(rt)]
    assert actions.count("officer.recovery_code_used") == 1
    assert ("officer.recovery_code_used", f"officer:{officer_id}",
            {"officer": officer_id, "left": 9}) in trail(rt)


def test_another_officers_recovery_code_does_not_work(
        active: tuple[Runtime, str, str, list[str]]) -> None:
    rt, _, _, codes = active
    _, token = invite(rt, "erin@example.org")
    set_up(rt, token)
    assert signin.sign_in(rt, "erin@example.org", PASSWORD, codes[0], HERE).outcome \
        == Outcome.REFUSED


@pytest.mark.parametrize("who", ["wrong password", "unknown address", "disabled", "invited"])
def test_a_failure_never_says_which_factor_was_wrong(
        active: tuple[Runtime, str, str, list[str]], who: str) -> None:
    rt, officer_id, secret, _ = active
    email, password = EMAIL, PASSWORD
    if who == "wrong password":
        password = "not the password"
    elif who == "unknown address":
        email = "nobody@example.org"
    elif who == "disabled":
        with rt.transaction() as session:
            accounts.disable(session, rt, held(session, officer_id), actor="operator:test")
    else:
        email = "ivan@example.org"
        invite(rt, email)
    result = signin.sign_in(rt, email, password, next_code(rt, secret), HERE)
    assert result == signin.SignIn(Outcome.REFUSED)
    action, actor, details = trail(rt)[-1]
    assert (action, actor) == ("officer.sign_in_failed", "anonymous")
    assert len(details["account"]) == 16 and "@" not in json.dumps(details)


# --- throttling ---------------------------------------------------------------------

DELAYS = [
    # failures in a row   account waits        address waits
    (1, timedelta(0), timedelta(0)),
    (3, timedelta(0), timedelta(0)),
    (4, timedelta(seconds=1), timedelta(seconds=1)),
    (5, timedelta(seconds=2), timedelta(seconds=2)),
    (8, timedelta(seconds=16), timedelta(seconds=16)),
    (10, timedelta(seconds=60), timedelta(seconds=64)),
    (15, timedelta(seconds=60), timedelta(seconds=2048)),
    (20, timedelta(seconds=60), timedelta(hours=1)),
]


@pytest.mark.parametrize(("failures", "account", "address"), DELAYS)
def test_failures_grow_the_wait_up_to_a_cap(failures: int, account: timedelta,
                                            address: timedelta) -> None:
    assert signin.delay_after(failures, signin.ACCOUNT_CAP) == account
    assert signin.delay_after(failures, signin.ADDRESS_CAP) == address


def fail(rt: Runtime, times: int, address: str = HERE, email: str = EMAIL) -> list[Outcome]:
    return [signin.sign_in(rt, email, "wrong password!", "000000", address).outcome
            for _ in range(times)]


def count(rt: Runtime, model: Any) -> int:
    with rt.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_throttled_attempt_writes_nothing(active: tuple[Runtime, str, str, list[str]]) -> None:
    rt, _, secret, _ = active
    assert fail(rt, 4) == [Outcome.REFUSED] * 4  # the fourth sets a 1 s wait
    events = count(rt, AuditEvent)
    with rt.transaction() as session:
        before = sorted((t.key, t.failures, t.blocked_until)
                        for t in session.scalars(select(SignInThrottle)))
    blocked = signin.sign_in(rt, EMAIL, PASSWORD, "000000", HERE)
    assert blocked.outcome == Outcome.THROTTLED and blocked.retry_after == 1
    # even the right password and code wait
    right = signin.sign_in(rt, EMAIL, PASSWORD, pyotp.TOTP(secret).at(rt.now()), HERE)
    assert right.outcome == Outcome.THROTTLED
    assert count(rt, AuditEvent) == events
    with rt.transaction() as session:
        after = sorted((t.key, t.failures, t.blocked_until)
                       for t in session.scalars(select(SignInThrottle)))
    assert after == before


def test_a_stranger_keeps_an_officer_out_for_a_minute_at_most(
        active: tuple[Runtime, str, str, list[str]]) -> None:
    """Forty failures from forty addresses: the officer's own address is not
    throttled, and the account waits a minute, not an hour."""
    rt, officer_id, secret, _ = active
    for n in range(40):
        rt.clock.advance(minutes=1)  # type: ignore[attr-defined]
        assert fail(rt, 1, address=f"198.51.100.{n}") == [Outcome.REFUSED]
    blocked = signin.sign_in(rt, EMAIL, PASSWORD, next_code(rt, secret), HERE)
    assert blocked.outcome == Outcome.THROTTLED and blocked.retry_after <= 60
    rt.clock.advance(seconds=blocked.retry_after)  # type: ignore[attr-defined]
    result = signin.sign_in(rt, EMAIL, PASSWORD, next_code(rt, secret), HERE)
    assert result.outcome == Outcome.SIGNED_IN and result.officer_id == officer_id
    assert count(rt, SignInThrottle) == 40  # the account's and this address's cleared


def test_one_address_guessing_waits_longer_and_longer(
        active: tuple[Runtime, str, str, list[str]]) -> None:
    rt, _, _, _ = active
    waits = []
    for n in range(12):
        email = f"guess{n}@example.org"  # a new account each time: the address throttle
        outcome = signin.sign_in(rt, email, "wrong password!", "000000", HERE)
        if outcome.outcome == Outcome.THROTTLED:
            waits.append(outcome.retry_after)
            rt.clock.advance(seconds=outcome.retry_after)  # type: ignore[attr-defined]
            assert fail(rt, 1, email=email) == [Outcome.REFUSED]
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128]


# --- sessions -----------------------------------------------------------------------


def signed_in(rt: Runtime, secret: str) -> str:
    result = signin.sign_in(rt, EMAIL, PASSWORD, next_code(rt, secret), HERE)
    assert result.token is not None
    return result.token


def alive(rt: Runtime, token: str) -> bool:
    with rt.transaction() as session:
        return sessions.resolve(session, rt, token) is not None


SESSION_ROWS = [
    # idle for                     used every 29 min for     alive
    (timedelta(minutes=30), None, True),
    (timedelta(minutes=30, seconds=1), None, False),
    (None, timedelta(hours=11, minutes=58), True),
    (None, timedelta(hours=12, minutes=1), False),
]


@pytest.mark.parametrize(("idle", "busy", "live"), SESSION_ROWS)
def test_a_session_ends_idle_after_30_minutes_and_after_12_hours_anyway(
        active: tuple[Runtime, str, str, list[str]], idle: timedelta | None,
        busy: timedelta | None, live: bool) -> None:
    rt, _, secret, _ = active
    token = signed_in(rt, secret)
    clock: MovableClock = rt.clock  # type: ignore[assignment]
    if idle is not None:
        clock.advance(idle)
    else:
        assert busy is not None
        used = timedelta(0)
        while used + timedelta(minutes=29) <= busy:
            clock.advance(minutes=29)
            used += timedelta(minutes=29)
            assert alive(rt, token)
        clock.advance(busy - used)
    assert alive(rt, token) is live
    if not live:  # ended for good: ten minutes earlier it would still be alive
        clock.advance(minutes=-10)
        assert not alive(rt, token)


@pytest.mark.parametrize("change", ["role", "disable"])
def test_a_role_change_or_disabling_ends_every_session(
        active: tuple[Runtime, str, str, list[str]], change: str) -> None:
    rt, officer_id, secret, _ = active
    tokens = [signed_in(rt, secret), signed_in(rt, secret)]
    with rt.transaction() as session:
        target = session.get(Officer, officer_id)
        assert target is not None
        if change == "role":
            accounts.set_role(session, rt, target, "auditor", actor="operator:test")
        else:
            accounts.disable(session, rt, target, actor="operator:test")
    assert not any(alive(rt, t) for t in tokens)
    expected = ("officer.role_changed", {"officer": officer_id, "from": "reviewer",
                                         "to": "auditor"}) if change == "role" else \
        ("officer.disabled", {"officer": officer_id})
    action, actor, details = trail(rt)[-1]
    assert (action, details) == expected and actor == "operator:test"


def test_signing_out_ends_that_session_only(
        active: tuple[Runtime, str, str, list[str]]) -> None:
    rt, officer_id, secret, _ = active
    mine, other = signed_in(rt, secret), signed_in(rt, secret)
    with rt.transaction() as session:
        assert sessions.end(session, rt, mine) == officer_id
        assert sessions.end(session, rt, mine) is None
    assert not alive(rt, mine) and alive(rt, other)


# --- the CLI ------------------------------------------------------------------------


def test_the_cli_creates_lists_changes_and_disables(
        clocked: Runtime, cli: Callable[..., Any]) -> None:
    created = cli("officers", "create", "boss@example.org", "--role", "admin")
    assert created.exit_code == 0, created.output
    assert "/console/setup/" in created.output and "2026-03-03 09:00 UTC" in created.output
    listed = cli("officers", "list", "--json")
    rows = json.loads(listed.output)
    assert [(r["email"], r["role"], r["status"]) for r in rows] == [
        ("boss@example.org", "admin", "invited")]
    assert cli("officers", "role", "boss@example.org", "auditor").exit_code == 0
    assert cli("officers", "disable", "boss@example.org").exit_code == 0
    rows = json.loads(cli("officers", "list", "--json").output)
    assert [(r["role"], r["status"]) for r in rows] == [("auditor", "disabled")]
    refused = cli("officers", "create", "boss@example.org", "--role", "admin")
    assert refused.exit_code == 1 and "exists already" in refused.output
    assert "Traceback" not in refused.output
    actors = {actor for _, actor, _ in trail(clocked)}
    assert actors == {f"operator:{__import__('getpass').getuser()}"}


def test_the_cli_acts_as_an_active_admin_only(
        active: tuple[Runtime, str, str, list[str]], cli: Callable[..., Any]) -> None:
    rt, officer_id, _, _ = active  # a reviewer
    refused = cli("officers", "create", "new@example.org", "--role", "auditor",
                  "--as", EMAIL)
    assert refused.exit_code == 1 and "needs the role admin" in refused.output
    with rt.transaction() as session:
        accounts.set_role(session, rt, held(session, officer_id), "admin", actor="operator:test")
    made = cli("officers", "create", "new@example.org", "--role", "auditor", "--as", EMAIL)
    assert made.exit_code == 0, made.output
    assert trail(rt)[-1][:2] == ("officer.created", f"officer:{officer_id}")
    unknown = cli("officers", "disable", "new@example.org", "--as", "nobody@example.org")
    assert unknown.exit_code == 1 and "no active officer" in unknown.output


# --- the last admin -----------------------------------------------------------------


@pytest.mark.parametrize("change", ["role", "disable"])
def test_the_last_active_admin_cannot_be_removed(clocked: Runtime, change: str) -> None:
    """Nobody could manage officers any more (the CLI could, on the server)."""
    boss_id, token = invite(clocked, "boss@example.org", "admin")
    set_up(clocked, token)
    other_id, _ = invite(clocked, "next@example.org", "admin")  # invited, not active

    def remove(officer_id: str) -> None:
        with clocked.transaction() as session:
            target = held(session, officer_id)
            if change == "role":
                accounts.set_role(session, clocked, target, "reviewer", actor="operator:test")
            else:
                accounts.disable(session, clocked, target, actor="operator:test")

    with pytest.raises(OfficerError, match="last active admin"):
        remove(boss_id)
    assert officer(clocked, boss_id).role == "admin"
    assert officer(clocked, boss_id).status == OfficerStatus.ACTIVE
    remove(other_id)  # an invited admin is not the last one standing
    _, token = invite(clocked, "deputy@example.org", "admin")
    set_up(clocked, token)
    remove(boss_id)  # another active admin: allowed


# --- the officer's own account ------------------------------------------------------

NEW_PASSWORD = "a different long passphrase"


def test_changing_the_password_needs_the_old_one_and_ends_every_session(
        active: tuple[Runtime, str, str, list[str]]) -> None:
    rt, officer_id, secret, _ = active
    tokens = [signed_in(rt, secret), signed_in(rt, secret)]
    with rt.transaction() as session, pytest.raises(OfficerError, match="current password"):
        accounts.change_password(session, rt, held(session, officer_id), "not it at all",
                                 NEW_PASSWORD)
    with rt.transaction() as session, pytest.raises(OfficerError, match="at least 12"):
        accounts.change_password(session, rt, held(session, officer_id), PASSWORD, "short")
    assert all(alive(rt, t) for t in tokens)
    with rt.transaction() as session:
        accounts.change_password(session, rt, held(session, officer_id), PASSWORD,
                                 NEW_PASSWORD)
    assert not any(alive(rt, t) for t in tokens)
    assert signin.sign_in(rt, EMAIL, PASSWORD, next_code(rt, secret), HERE).outcome \
        == Outcome.REFUSED
    assert signin.sign_in(rt, EMAIL, NEW_PASSWORD, next_code(rt, secret), HERE).outcome \
        == Outcome.SIGNED_IN
    assert ("officer.password_changed", f"officer:{officer_id}",
            {"officer": officer_id}) in trail(rt)


def test_new_recovery_codes_replace_the_old_ones(
        active: tuple[Runtime, str, str, list[str]]) -> None:
    rt, officer_id, _, old = active
    with rt.transaction() as session, pytest.raises(OfficerError, match="current password"):
        accounts.renew_recovery_codes(session, rt, held(session, officer_id), "wrong!")
    with rt.transaction() as session:
        new = accounts.renew_recovery_codes(session, rt, held(session, officer_id), PASSWORD)
    assert len(new) == 10 and not set(new) & set(old)
    assert signin.sign_in(rt, EMAIL, PASSWORD, old[0], HERE).outcome == Outcome.REFUSED
    assert signin.sign_in(rt, EMAIL, PASSWORD, new[0], HERE).recovery_left == 9
    assert ("officer.recovery_codes_renewed", f"officer:{officer_id}",
            {"officer": officer_id, "recovery_codes": 10}) in trail(rt)


def test_a_reset_takes_both_factors_away_and_gives_a_new_link(
        active: tuple[Runtime, str, str, list[str]]) -> None:
    """An officer who lost their phone and their codes: an admin resets them."""
    rt, officer_id, secret, codes = active
    token = signed_in(rt, secret)
    with rt.transaction() as session:
        invitation = accounts.reset(session, rt, held(session, officer_id),
                                    actor="officer:boss")
    assert not alive(rt, token)
    reset = officer(rt, officer_id)
    assert reset.status == OfficerStatus.INVITED and reset.password_hash is None
    assert reset.totp_secret_ct is None and reset.setup_expires_at == invitation.expires_at
    assert signin.sign_in(rt, EMAIL, PASSWORD, codes[1], HERE).outcome == Outcome.REFUSED
    new_secret, _ = set_up(rt, invitation.url.rsplit("/", 1)[1])
    assert signin.sign_in(rt, EMAIL, PASSWORD, next_code(rt, new_secret), HERE).outcome \
        == Outcome.SIGNED_IN
    assert ("officer.reset", "officer:boss", {"officer": officer_id}) in trail(rt)
