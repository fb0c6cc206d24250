"""What one run of a task came to, before it is recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    ok: bool
    records: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    retryable: bool = False
    #: identifiers a discovery found: written encrypted, never into ``result``
    identifiers: dict[str, list[str]] = field(default_factory=dict)
    #: how many identifiers the subject had for this run
    seen: int = 0
    #: a task claimed for this worker while the outcome was recorded, to run
    #: next, and what it needs (read in the same transaction)
    follow_up: int | None = None
    follow_up_job: Any = None

    @property
    def changed_store(self) -> bool:
        return bool(self.result.get("deleted") or self.result.get("masked"))
