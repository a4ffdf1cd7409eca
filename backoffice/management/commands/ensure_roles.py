from django.core.management.base import BaseCommand

from backoffice.roles import GROUP_NAMES, ensure_roles


class Command(BaseCommand):
    help = "Create the staff roles (operator, accountant, administrator) as permission groups."

    def handle(self, *args, **options):
        groups = ensure_roles()
        for role, group in groups.items():
            self.stdout.write(f"{GROUP_NAMES[role]}: {group.permissions.count()} permissions")
