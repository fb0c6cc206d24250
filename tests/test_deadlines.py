"""GDPR Art. 12(3): an answer within one month of receipt, counted as
Regulation 1182/71 counts a month: the same date of the next month, or that
month's last day when it has no such date. Each row: when the request came
in (UTC), when the answer is due, and why the row is there."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dsar.workflow.deadlines import due_date

ROWS = [
    # received                  due                          why
    ((2026, 3, 15, 9, 30), (2026, 4, 15, 9, 30), "an ordinary month: the same date"),
    ((2026, 1, 31, 23, 0), (2026, 2, 28, 23, 0), "31 January: February has no 31st"),
    ((2026, 1, 30, 10, 0), (2026, 2, 28, 10, 0), "30 January: February has no 30th"),
    ((2026, 1, 28, 10, 0), (2026, 2, 28, 10, 0), "28 January: February has a 28th"),
    ((2028, 1, 31, 12, 0), (2028, 2, 29, 12, 0), "31 January of a leap year: the 29th"),
    ((2028, 1, 29, 12, 0), (2028, 2, 29, 12, 0), "29 January of a leap year: the 29th"),
    ((2028, 2, 29, 12, 0), (2028, 3, 29, 12, 0), "29 February: 29 March, not the month's end"),
    ((2026, 2, 28, 12, 0), (2026, 3, 28, 12, 0), "28 February: 28 March, not the month's end"),
    ((2026, 3, 31, 8, 0), (2026, 4, 30, 8, 0), "31 March: April has 30 days"),
    ((2026, 5, 31, 0, 0), (2026, 6, 30, 0, 0), "31 May at midnight"),
    ((2026, 8, 31, 8, 0), (2026, 9, 30, 8, 0), "31 August: September has 30 days"),
    ((2026, 12, 20, 8, 0), (2027, 1, 20, 8, 0), "December: into the next year"),
    ((2026, 12, 31, 23, 59, 59), (2027, 1, 31, 23, 59, 59), "the year's last second"),
    ((2026, 6, 15, 23, 59, 59), (2026, 7, 15, 23, 59, 59), "late in the day: the time is kept"),
    ((2026, 6, 15, 0, 0, 0), (2026, 7, 15, 0, 0, 0), "the day's first second"),
]


@pytest.mark.parametrize(("received", "due"), [(r, d) for r, d, _ in ROWS],
                         ids=[why for *_, why in ROWS])
def test_one_month(received: tuple[int, ...], due: tuple[int, ...]) -> None:
    assert due_date(datetime(*received, tzinfo=UTC)) == datetime(*due, tzinfo=UTC)


def test_the_due_date_keeps_microseconds_and_utc() -> None:
    received = datetime(2026, 3, 15, 9, 30, 5, 123456, tzinfo=UTC)
    assert due_date(received) == datetime(2026, 4, 15, 9, 30, 5, 123456, tzinfo=UTC)
    assert due_date(received).tzinfo is UTC
