"""The demo's invoicing: brands, catalogue, tariffs, subscriptions, usage, readings, a run.

Everything goes through the owners' services: ``brands.services`` for brands and their
catalogue, ``invoicing.services`` for tariffs and subscriptions (its bulk path),
``invoicing.ingest`` for usage (a CSV through the COPY path) and meter readings (their
service installs each meter at its first reading), then one invoice run per brand for
last month in ``issue`` mode, whose plan and chunks are run here by the q2 task
functions themselves (the same code a q2 worker runs; chunks in parallel threads, each
with its own connection), and the PDFs of the issued invoices are rendered and stored by
``invoicing.documents``.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.utils import timezone

from brands import services as brand_services
from brands.models import Brand, Service
from core.validators import inn_complete
from demo.parallel import in_threads
from demo.population import Population
from demo.reference import BRANDS, HEATING_MONTHS, SERVICES, TARIFFS, ogrn_complete
from invoicing import documents, ingest, tasks
from invoicing import services as invoicing
from invoicing.models import Invoice, InvoiceRun, InvoiceRunChunk, Tariff

SOURCE = "seed_demo"


@dataclass
class BillingResult:
    subscriptions: int = 0
    usage: int = 0
    readings: int = 0
    runs: int = 0
    invoices: int = 0
    pdfs: int = 0


def catalogue_ensure(valid_from: date) -> tuple[dict[str, Brand], dict[str, dict[str, Service]]]:
    """The three demo brands, their services and tariffs (reused when they exist)."""
    brands: dict[str, Brand] = {}
    services: dict[str, dict[str, Service]] = {}
    for spec in BRANDS:
        fields = dict(spec)
        fields["tax_id"] = inn_complete(fields.pop("inn_body"))
        fields["ogrn"] = ogrn_complete(fields.pop("ogrn_body"))
        brand = Brand.objects.filter(code=fields["code"]).first()
        brand = brand or brand_services.brand_create(**fields)
        brands[brand.code] = brand
        services[brand.code] = {}
        for code, name, unit, vat in SERVICES[brand.code]:
            service = Service.objects.filter(brand=brand, code=code).first()
            if service is None:
                service = brand_services.service_create(
                    brand=brand, code=code, name=name, unit=unit, vat_rate=vat
                )
            services[brand.code][code] = service
            for plan, kind, price in TARIFFS.get(code, []):
                if not Tariff.objects.filter(service=service, plan=plan).exists():
                    invoicing.tariff_create(
                        service=service,
                        plan=plan,
                        kind=kind,
                        valid_from=valid_from,
                        **({"tiers": price} if kind == "tiered" else {"price": price}),
                    )
    return brands, services


# What each profile subscribes to: (brand, service, plan, or "" for the member's own plan).
SUBSCRIPTIONS = {
    "utility": [
        ("energo", "electricity", "standard"),
        ("energo", "cold_water", "standard"),
        ("energo", "heating", "standard"),
        ("energo", "capital_repair", "standard"),
    ],
    "business_utility": [("energo", "electricity", "business")],
    "telecom": [("telecom", "mobile_plan", ""), ("telecom", "roaming_data", "standard")],
    "business_telecom": [("telecom", "corporate_plan", "")],
}


class Billing:
    def __init__(
        self,
        *,
        population: Population,
        brands: dict[str, Brand],
        services: dict[str, dict[str, Service]],
        seed: int,
        period_start: date,
        log: Callable[[str], None],
    ) -> None:
        self.population = population
        self.brands = brands
        self.services = services
        self.rng = random.Random(f"{seed}:billing")
        self.period_start = period_start
        self.period_end = (period_start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        self.log = log
        self.result = BillingResult()
        self.billed = [
            m
            for m in population.members
            if m.profile in SUBSCRIPTIONS and not m.closed and m.since.date() < self.period_end
        ]

    def _moment(self, day: date, hour: int) -> datetime:
        return timezone.make_aware(datetime.combine(day, time(hour, self.rng.randrange(60))))

    def subscribe(self) -> None:
        tariffs = {(t.service_id, t.plan): t for t in Tariff.objects.select_related("service")}
        rows = []
        for m in self.billed:
            starts_on = max(self.period_start, m.since.date())
            for brand, code, plan in SUBSCRIPTIONS[m.profile]:
                tariff = tariffs[self.services[brand][code].pk, plan or m.plan]
                rows.append((m.id, tariff, starts_on, None))
        for start in range(0, len(rows), 20000):
            made = invoicing.subscriptions_create_bulk(subscriptions=rows[start : start + 20000])
            self.result.subscriptions += len(made)

    def usage(self) -> None:
        """Last month's usage as a CSV through the ingest service's COPY path."""
        energo, telecom = self.services["energo"], self.services["telecom"]
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["account", "service", "quantity", "occurred_at", "external_id"])
        end = self.period_end
        for m in self.billed:
            if m.profile == "utility":
                writer.writerow(
                    [m.id, energo["capital_repair"].pk, m.area, self._moment(end, 12).isoformat(),
                     f"area-{m.id}-{end:%Y%m}"]
                )  # fmt: skip
                if end.month in HEATING_MONTHS:
                    gcal = Decimal(self.rng.randint(600, 2500)) / 1000
                    writer.writerow(
                        [m.id, energo["heating"].pk, gcal, self._moment(end, 13).isoformat(),
                         f"heat-{m.id}-{end:%Y%m}"]
                    )  # fmt: skip
            elif m.profile == "telecom" and self.rng.random() < 0.25:
                for session in range(self.rng.randint(1, 4)):
                    day = self.period_start + timedelta(days=self.rng.randrange(end.day))
                    writer.writerow(
                        [m.id, telecom["roaming_data"].pk, self.rng.randint(20, 500),
                         self._moment(max(day, m.since.date()), 15).isoformat(),
                         f"roam-{m.id}-{day:%Y%m%d}-{session}"]
                    )  # fmt: skip
        result = ingest.usage_ingest_file(stream=io.BytesIO(out.getvalue().encode()), source=SOURCE)
        if result.errors:
            raise RuntimeError(f"demo usage refused: {result.errors[:3]}")
        self.result.usage = result.accepted

    def readings(self) -> None:
        """Electricity and water meters: a baseline the month before, a reading in the month."""
        energo = self.services["energo"]
        before = self.period_start - timedelta(days=5)
        records = []
        for m in self.billed:
            if m.profile not in ("utility", "business_utility") or m.since.date() > before:
                continue
            meters = [("electricity", 90, 450)]
            if m.profile == "business_utility":
                meters = [("electricity", 1500, 30000)]
            else:
                meters.append(("cold_water", 3, 14))
            for code, low, high in meters:
                start = Decimal(self.rng.randint(1000, 90000))
                used = Decimal(self.rng.randint(low, high))
                for taken, value in (
                    (before, start),
                    (self.period_end - timedelta(days=3), start + used),
                ):
                    records.append(
                        {
                            "account": m.id,
                            "service": energo[code].pk,
                            "reading": value,
                            "taken_at": self._moment(taken, 10).isoformat(),
                            "external_id": f"{code}-{m.id}-{taken:%Y%m}",
                        }
                    )
        for start in range(0, len(records), 50000):
            result = ingest.meter_readings_ingest_records(
                records=records[start : start + 50000], source=SOURCE, max_records=None
            )
            if result.errors:
                raise RuntimeError(f"demo readings refused: {result.errors[:3]}")
            self.result.readings += result.accepted

    def run(self, *, admin, workers: int, pdf_limit: int) -> list[InvoiceRun]:
        """One run per billed brand for last month, issued; then the invoices' PDFs."""
        runs = []
        period = f"{self.period_start:%Y-%m}"
        for code in ("energo", "telecom"):
            run = invoicing.invoice_run_start(
                period=period, brand=self.brands[code], mode=InvoiceRun.Mode.ISSUE,
                created_by=admin,
            )  # fmt: skip
            tasks.invoice_run_plan(run.pk)  # what the q2 task does; its queued twin is a no-op
            chunks = list(
                InvoiceRunChunk.objects.filter(run=run)
                .order_by("index")
                .values_list("pk", flat=True)
            )
            in_threads(chunks, tasks.invoice_run_chunk, workers)
            run.refresh_from_db()
            runs.append(run)
            self.log(f"invoice run {run.pk} ({code}, {period}): {run.status}")
        self.result.runs = len(runs)
        issued = list(
            Invoice.objects.filter(run__in=runs).order_by("pk").values_list("pk", flat=True)
        )
        self.result.invoices = len(issued)
        # Rendered here up to the limit; the rest by the delivery tasks the issue queued.
        todo = issued[:pdf_limit]
        size = documents.pdf_chunk_size()
        parts = [todo[i : i + size] for i in range(0, len(todo), size)]
        # One thread: rendering is CPU-bound Python, a second thread would only wait.
        rendered = in_threads(parts, lambda ids: documents.invoice_pdfs_render(invoice_ids=ids), 1)
        self.result.pdfs = sum(rendered)
        return runs
