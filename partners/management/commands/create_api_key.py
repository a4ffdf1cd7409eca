from django.core.management.base import BaseCommand, CommandError

from access.services import api_key_create, partner_get_or_create
from brands.models import Brand
from core.api.principal import CAPABILITIES


class Command(BaseCommand):
    help = (
        "Create an API key for a partner (created if needed) scoped to the given brands. "
        "The key is printed once, alone on the last line; only its hash is stored."
    )

    def add_arguments(self, parser):
        parser.add_argument("--partner", required=True, help="Partner name.")
        parser.add_argument("--brands", required=True, help="Brand codes, comma-separated.")
        parser.add_argument("--name", default="", help="A label for the key.")
        parser.add_argument(
            "--can",
            default=None,
            help=(
                "What the key may do, comma-separated (default: everything): "
                f"{', '.join(CAPABILITIES)}."
            ),
        )

    def handle(self, *args, partner: str, brands: str, name: str, can: str | None, **options):
        codes = sorted({code.strip() for code in brands.split(",") if code.strip()})
        if not partner.strip() or not codes:
            raise CommandError("Give a partner name and at least one brand code.")
        capabilities = None
        if can is not None:
            capabilities = [c.strip() for c in can.split(",") if c.strip()]
            unknown = sorted(set(capabilities) - set(CAPABILITIES))
            if unknown or not capabilities:
                raise CommandError(
                    f"Unknown capability: {', '.join(unknown) or '(none given)'}. "
                    f"Choose from {', '.join(CAPABILITIES)}."
                )
        found = list(Brand.objects.filter(code__in=codes))
        missing = sorted(set(codes) - {brand.code for brand in found})
        if missing:
            raise CommandError(f"Unknown brand code(s): {', '.join(missing)}")
        partner_obj = partner_get_or_create(name=partner, brands=found)
        key, raw_key = api_key_create(
            partner=partner_obj, brands=found, name=name, capabilities=capabilities
        )
        self.stdout.write(
            f"API key {key.prefix} for partner {partner_obj.name!r}, brands {', '.join(codes)},"
            f" may: {', '.join(key.capabilities)}. Store it now: it cannot be shown again."
        )
        self.stdout.write(raw_key)
