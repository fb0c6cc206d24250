"""What a requester may see of their own request: nothing internal."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from ..workflow.states import Status
from ..workflow.task_states import Step, TaskStatus

#: task states as a requester reads them
PROGRESS = {TaskStatus.PENDING: "waiting", TaskStatus.RUNNING: "working",
            TaskStatus.SUCCEEDED: "done", TaskStatus.FAILED: "problem",
            TaskStatus.CANCELLED: "stopped"}


class StoreProgress(Schema):
    store = fields.String(attribute="connector")
    state = fields.Function(lambda task: PROGRESS.get(task.status, "waiting"))


class RequestRequesterView(Schema):
    id = fields.String()
    kind = fields.String()
    status = fields.String()
    received_at = fields.AwareDateTime()
    due_at = fields.AwareDateTime()
    progress = fields.Function(lambda request: StoreProgress(many=True).dump(
        [t for t in request.tasks if t.step != Step.BUNDLE]))
    reason = fields.Method("_reason")

    def _reason(self, request: Any) -> str | None:
        """A denial's reason, or else why the deadline was extended (Art. 12(3)):
        the reasons meant for the requester."""
        if request.status == Status.DENIED:
            return request.status_reason  # type: ignore[no-any-return]
        return request.extension_reason  # type: ignore[no-any-return]
