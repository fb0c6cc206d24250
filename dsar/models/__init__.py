"""The database models, one module per aggregate."""

from ..database import Base
from .audit import AuditEvent, AuditHead
from .export import ExportBundle
from .outbox import MailStatus, OutboxMail
from .request import Request, SubjectIdentifier
from .role import WorkerRole
from .task import Task
from .verification import Verification

__all__ = ["AuditEvent", "AuditHead", "Base", "ExportBundle", "MailStatus", "OutboxMail", "Request",
           "SubjectIdentifier", "Task", "Verification", "WorkerRole"]
