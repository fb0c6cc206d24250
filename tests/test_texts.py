"""Texts as a requester reads them: counts of one in the singular, waits in
minutes and hours (never "3540 seconds"), a company's own wording kept."""

from __future__ import annotations

import pytest

from dsar.texts import DEFAULTS, duration, say


@pytest.mark.parametrize(("seconds", "words"), [
    (0, "1 second"), (0.2, "1 second"), (1, "1 second"), (31, "31 seconds"),
    (59, "59 seconds"), (59.5, "1 minute"), (60, "1 minute"), (61, "2 minutes"),
    (120, "2 minutes"), (3540, "59 minutes"), (3599, "1 hour"), (3600, "1 hour"),
    (3601, "1 hour and 1 minute"), (3660, "1 hour and 1 minute"),
    (5400, "1 hour and 30 minutes"), (7200, "2 hours"), (7260, "2 hours and 1 minute"),
    (86400, "24 hours"),
])
def test_a_wait_in_words_is_never_shorter_than_the_wait(seconds: float, words: str) -> None:
    """Rounded up, so a requester who waits that long is never too early."""
    assert duration(DEFAULTS, seconds) == words


def test_the_units_are_the_company_s_words() -> None:
    german = {**DEFAULTS, "duration.minute": "{n} Minute", "duration.minutes": "{n} Minuten",
              "duration.hour": "{n} Stunde", "duration.and": "{hours} und {minutes}"}
    assert duration(german, 300) == "5 Minuten"
    assert duration(german, 3660) == "1 Stunde und 1 Minute"


@pytest.mark.parametrize(("left", "text"), [
    (4, "That code is not right. 4 attempts left."),
    (2, "That code is not right. 2 attempts left."),
    (1, "That code is not right. 1 attempt left."),
    (0, "That code is not right. 0 attempts left."),
])
def test_one_attempt_left_is_singular(left: int, text: str) -> None:
    assert say(DEFAULTS, "verify.wrong_code", left=left) == text


def test_one_download_left_is_singular() -> None:
    assert say(DEFAULTS, "download.left", left=1) == "1 download left."
    assert say(DEFAULTS, "download.left", left=3) == "3 downloads left."
    assert say(DEFAULTS, "download.valid", left=1, until="1 May") == (
        "The link works until 1 May; 1 download left.")


def test_seconds_are_worded_as_a_wait() -> None:
    assert say(DEFAULTS, "resend.cooldown", seconds=31) == (
        "A code was sent a moment ago. You can ask again in 31 seconds.")
    assert say(DEFAULTS, "error.429.body", seconds=3540) == (
        "Please wait 59 minutes, then try again.")
    assert "3540" not in say(DEFAULTS, "error.429.body", seconds=3540)


def test_a_company_text_with_the_old_placeholders_keeps_working() -> None:
    """Overrides written for ``{seconds}`` and a plural-only ``{left}`` still read."""
    own = {**DEFAULTS, "error.429.body": "Bitte {seconds} Sekunden warten.",
           "verify.wrong_code": "Falscher Code. Noch {left} Versuche."}
    del own["verify.wrong_code.one"]
    assert say(own, "error.429.body", seconds=90) == "Bitte 90 Sekunden warten."
    assert say(own, "verify.wrong_code", left=1) == "Falscher Code. Noch 1 Versuche."


def test_a_text_without_counts_or_waits_is_only_formatted() -> None:
    assert say(DEFAULTS, "verify.format") == DEFAULTS["verify.format"]
    assert say(DEFAULTS, "api.method_not_allowed", method="PUT") == (
        "This address does not accept PUT.")
