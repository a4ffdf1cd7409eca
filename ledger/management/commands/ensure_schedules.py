from importlib import import_module

from django.apps import apps
from django.core.management.base import BaseCommand
from django_q.models import Schedule


class Command(BaseCommand):
    help = "Create or update the django-q2 schedules every app declares in <app>.tasks.SCHEDULES."

    def handle(self, *args, **options):
        for config in apps.get_app_configs():
            try:
                module = import_module(f"{config.name}.tasks")
            except ModuleNotFoundError as exc:
                if exc.name != f"{config.name}.tasks":
                    raise
                continue
            for spec in getattr(module, "SCHEDULES", []):
                spec = dict(spec)
                name = spec.pop("name")
                schedule, created = Schedule.objects.update_or_create(name=name, defaults=spec)
                verb = "created" if created else "updated"
                self.stdout.write(f"schedule {name!r}: {verb} ({schedule.func})")
