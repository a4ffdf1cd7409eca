from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit trail's shared pieces (no models of its own; each app tracks its models)."""

    name = "core.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from django_q.signals import post_execute_in_worker, pre_execute

        from core.audit.context import install_command_context, task_finished, task_started

        pre_execute.connect(task_started, dispatch_uid="core.audit.task_started")
        post_execute_in_worker.connect(task_finished, dispatch_uid="core.audit.task_finished")
        install_command_context()
