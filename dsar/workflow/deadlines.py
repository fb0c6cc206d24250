"""Deadlines. GDPR Art. 12(3): answer within one month of receipt.

A month is counted as Regulation 1182/71 does: it ends on the same date of the
next month, or on that month's last day when it has no such date (31 January
→ 28 or 29 February). Jurisdictions and extensions come later.
"""

from __future__ import annotations

import calendar
from datetime import datetime


def add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def due_date(received_at: datetime) -> datetime:
    """When the answer to a request received at ``received_at`` is due."""
    return add_months(received_at, 1)
