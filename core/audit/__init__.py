"""The audit trail: database triggers (django-pghistory) record every change of the
audited fields with old and new values, the actor and the time.

``core.audit.models.audit_event_model`` declares an app's event table next to its
model; ``core.audit.context`` attaches the actor; ``core.audit.history`` reads an
object's trail and ``core.audit.admin.AuditHistoryMixin`` shows it on its admin page.
This package imports no app.
"""
