"""dsar/portal/tokens.py, the status tokens in the session cookie, rule by rule: one token
per request (the newest wins), the newest KEPT kept in order, anything else in the cookie
ignored rather than trusted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, session

from dsar.portal import tokens


@pytest.fixture
def cookie() -> Iterator[None]:
    """A request context with an empty session, as the portal's views run in."""
    app = Flask(__name__)
    app.secret_key = "s" * 32
    with app.test_request_context("/"):
        yield


@pytest.mark.usefixtures("cookie")
def test_a_remembered_token_is_found_by_its_request_only() -> None:
    tokens.remember("r1", "t1")
    tokens.remember("r2", "t2")
    assert tokens.token_for("r1") == "t1"
    assert tokens.token_for("r2") == "t2"
    assert tokens.token_for("r3") == ""
    assert session[tokens.KEY] == [["r1", "t1"], ["r2", "t2"]]


@pytest.mark.usefixtures("cookie")
def test_a_new_token_for_a_request_replaces_its_old_one_and_moves_last() -> None:
    tokens.remember("r1", "old")
    tokens.remember("r2", "t2")
    tokens.remember("r1", "new")
    assert session[tokens.KEY] == [["r2", "t2"], ["r1", "new"]]
    assert tokens.token_for("r1") == "new"


@pytest.mark.usefixtures("cookie")
def test_only_the_newest_ten_are_kept_oldest_dropped_first() -> None:
    assert tokens.KEPT == 10
    for n in range(12):
        tokens.remember(f"r{n}", f"t{n}")
    assert session[tokens.KEY] == [[f"r{n}", f"t{n}"] for n in range(2, 12)]
    assert tokens.token_for("r1") == ""
    assert tokens.token_for("r2") == "t2"
    assert tokens.token_for("r11") == "t11"


@pytest.mark.usefixtures("cookie")
def test_ten_are_all_kept() -> None:
    for n in range(10):
        tokens.remember(f"r{n}", f"t{n}")
    assert [tokens.token_for(f"r{n}") for n in range(10)] == [f"t{n}" for n in range(10)]


@pytest.mark.usefixtures("cookie")
@pytest.mark.parametrize("raw", [None, "r1", {"r1": "t1"}, 7])
def test_a_cookie_value_that_is_not_a_list_holds_no_tokens(raw: Any) -> None:
    session[tokens.KEY] = raw
    assert tokens.token_for("r1") == ""
    tokens.remember("r2", "t2")
    assert session[tokens.KEY] == [["r2", "t2"]]


@pytest.mark.usefixtures("cookie")
def test_malformed_pairs_are_ignored_and_dropped() -> None:
    session[tokens.KEY] = [
        ["r1", "t1"], ["r2"], ["r3", "t3", "x"], ["r4", 4], [5, "t5"], "r6", ("r7", "t7"),
        ["r8", "t8"],
    ]
    assert [tokens.token_for(f"r{n}") for n in range(1, 9)] == \
        ["t1", "", "", "", "", "", "", "t8"]
    tokens.remember("r9", "t9")
    assert session[tokens.KEY] == [["r1", "t1"], ["r8", "t8"], ["r9", "t9"]]


@pytest.mark.usefixtures("cookie")
def test_the_first_matching_pair_wins() -> None:
    session[tokens.KEY] = [["r1", "first"], ["r1", "second"]]
    assert tokens.token_for("r1") == "first"
