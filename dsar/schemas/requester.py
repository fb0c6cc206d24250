"""What a requester may see of their own request: nothing internal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, fields

from ..workflow.states import Status
from ..workflow.task_states import Step, TaskStatus

#: task states as a requester reads them
PROGRESS = {TaskStatus.PENDING: "waiting", TaskStatus.RUNNING: "working",
            TaskStatus.SUCCEEDED: "done", TaskStatus.FAILED: "problem",
            TaskStatus.CANCELLED: "stopped"}


class StoreProgress(Schema):
    """One store's progress: ``store`` its name in the connector file (for
    programs), ``label`` what the company calls it for requesters (``None``
    when it gave no label: show a neutral text, never ``store``)."""

    store = fields.String(attribute="connector")
    label = fields.Method("_label")
    state = fields.Function(lambda task: PROGRESS.get(task.status, "waiting"))

    def __init__(self, *, labels: Mapping[str, str | None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.labels = labels or {}

    def _label(self, task: Any) -> str | None:
        return self.labels.get(task.connector)


class RequestRequesterView(Schema):
    """``labels``: each store's label by its name (:func:`dsar.registry.labels`);
    without them every ``label`` is ``None``."""

    id = fields.String()
    kind = fields.String()
    status = fields.String()
    received_at = fields.AwareDateTime()
    due_at = fields.AwareDateTime()
    progress = fields.Method("_progress")
    reason = fields.Method("_reason")

    def __init__(self, *, labels: Mapping[str, str | None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.labels = labels or {}

    def _progress(self, request: Any) -> list[dict[str, Any]]:
        progress: list[dict[str, Any]] = StoreProgress(many=True, labels=self.labels).dump(
            [t for t in request.tasks if t.step != Step.BUNDLE])
        return progress

    def _reason(self, request: Any) -> str | None:
        """A denial's reason, or else why the deadline was extended (Art. 12(3)):
        the reasons meant for the requester."""
        if request.status == Status.DENIED:
            return request.status_reason  # type: ignore[no-any-return]
        return request.extension_reason  # type: ignore[no-any-return]
