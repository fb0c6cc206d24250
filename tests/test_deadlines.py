"""GDPR Art. 12(3): one calendar month from receipt."""

from datetime import UTC, datetime

import pytest

from dsar.workflow.deadlines import due_date


@pytest.mark.parametrize(("received", "due"), [
    ((2026, 3, 15, 9, 30), (2026, 4, 15, 9, 30)),
    ((2026, 1, 31, 23, 0), (2026, 2, 28, 23, 0)),
    ((2028, 1, 31, 12, 0), (2028, 2, 29, 12, 0)),   # leap year
    ((2026, 12, 20, 8, 0), (2027, 1, 20, 8, 0)),    # across the year
    ((2026, 5, 31, 0, 0), (2026, 6, 30, 0, 0)),
])
def test_one_month(received: tuple[int, ...], due: tuple[int, ...]) -> None:
    assert due_date(datetime(*received, tzinfo=UTC)) == datetime(*due, tzinfo=UTC)
