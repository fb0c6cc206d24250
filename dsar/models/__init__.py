"""The database models, one module per aggregate."""

from ..database import Base
from .audit import AuditCheck, AuditEvent, AuditHead
from .export import ExportBundle
from .officer import (
                      Officer,
                      OfficerDueAlert,
                      OfficerRecoveryCode,
                      OfficerRole,
                      OfficerSession,
                      OfficerStatus,
                      SignInThrottle,
)
from .outbox import MailStatus, OutboxMail
from .preview import ErasurePreview
from .request import Request, RequestToken, SubjectIdentifier, TokenHolder
from .role import WorkerRole
from .task import Task
from .verification import Verification

__all__ = ["AuditCheck", "AuditEvent", "AuditHead", "Base", "ErasurePreview", "ExportBundle",
           "MailStatus", "Officer", "OfficerDueAlert", "OfficerRecoveryCode", "OfficerRole",
           "OfficerSession", "OfficerStatus", "OutboxMail", "Request", "RequestToken",
           "SignInThrottle", "SubjectIdentifier", "Task", "TokenHolder", "Verification",
           "WorkerRole"]
