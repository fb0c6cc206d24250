"""Retry backoff, as a table: after the n-th failed try, wait the first delay
doubled n-1 times, up to the cap, then between half and all of it (jitter).
Tasks use TASK_RETRY_SECONDS (5 s) up to TASK_RETRY_MAX_DELAY_SECONDS (300 s);
mail uses 15 s up to 600 s."""

from __future__ import annotations

from typing import Any

import pytest

from dsar import outbox
from dsar.workflow import retry

#: failed tries -> the full delay (seconds) before jitter, for tasks (5 s, cap 300 s)
TASK_DELAYS = {1: 5, 2: 10, 3: 20, 4: 40, 5: 80, 6: 160, 7: 300, 8: 300, 50: 300, 10_000: 300}
#: the same for mail (15 s, cap 600 s)
MAIL_DELAYS = {1: 15, 2: 30, 3: 60, 4: 120, 5: 240, 6: 480, 7: 600, 30: 600}


class Settings:
    def __init__(self) -> None:
        self.settings = {"TASK_RETRY_SECONDS": 5.0, "TASK_RETRY_MAX_DELAY_SECONDS": 300.0}


@pytest.fixture(params=["least", "most"])
def jitter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> float:
    """Jitter at its bounds: the wait is half the full delay, or all of it."""
    pick = {"least": lambda low, _high: low, "most": lambda _low, high: high}[request.param]
    monkeypatch.setattr(retry.random, "uniform", pick)
    return 0.5 if request.param == "least" else 1.0


@pytest.mark.parametrize(("tries", "full"), TASK_DELAYS.items(),
                         ids=[f"task after {n} failed" for n in TASK_DELAYS])
def test_task_retry_delays(tries: int, full: float, jitter: float) -> None:
    rt: Any = Settings()
    assert retry.delay_seconds(rt, tries) == pytest.approx(full * jitter)


@pytest.mark.parametrize(("tries", "full"), MAIL_DELAYS.items(),
                         ids=[f"mail after {n} failed" for n in MAIL_DELAYS])
def test_mail_retry_delays(tries: int, full: float, jitter: float) -> None:
    assert outbox.retry_delay(tries) == pytest.approx(full * jitter)


def test_jitter_stays_within_half_and_all_of_the_delay() -> None:
    waits = [retry.backoff(3, 5.0, 300.0) for _ in range(2000)]
    assert min(waits) >= 10.0 and max(waits) <= 20.0
    assert max(waits) - min(waits) > 5.0  # it does spread the tries out


def test_a_zeroth_try_waits_the_first_delay() -> None:
    """Counted from 1; a count of 0 (never failed) is not a shorter wait."""
    assert 2.5 <= retry.backoff(0, 5.0, 300.0) <= 5.0
