"""The audit: every AUTH attempt and message decision as an event, stored and logged;
anomaly rules over them; alerts to the log, a signed webhook and the owner's mailbox.

Never imports the wire (smtp), the CLI or the web.
"""

from smtpgate.audit.alerts import AlertDispatcher, EmailSink, WebhookSink
from smtpgate.audit.anomaly import AlertSettings, AnomalyDetector
from smtpgate.audit.events import AuditEvent, StoredEvent
from smtpgate.audit.recorder import AuditRecorder
from smtpgate.audit.store import Alert, AuditStore

__all__ = [
    "Alert",
    "AlertDispatcher",
    "AlertSettings",
    "AnomalyDetector",
    "AuditEvent",
    "AuditRecorder",
    "AuditStore",
    "EmailSink",
    "StoredEvent",
    "WebhookSink",
]
