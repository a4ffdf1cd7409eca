import time

from django.core.management.base import BaseCommand, CommandError

from brands.models import Brand
from core.errors import DomainError
from invoicing import services
from invoicing.models import InvoiceRun


class Command(BaseCommand):
    help = (
        "Start an invoice run for a period (in the background on the q2 cluster, or --wait "
        "to follow it), approve a draft run, or resume a crashed one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--period", help="YYYY-MM")
        parser.add_argument("--brand", help="Brand code (default: all brands).")
        parser.add_argument("--mode", choices=InvoiceRun.Mode.values, default="issue")
        parser.add_argument("--chunk-size", type=int)
        parser.add_argument("--approve", type=int, metavar="RUN_ID")
        parser.add_argument("--resume", type=int, metavar="RUN_ID")
        parser.add_argument(
            "--wait", action="store_true", help="Print progress until the run is finished."
        )

    def handle(self, *args, period, brand, mode, chunk_size, approve, resume, wait, **options):
        try:
            if approve:
                run = services.invoice_run_approve(run=approve)
            elif resume:
                count = services.invoice_run_resume(run=resume)
                self.stdout.write(f"run {resume}: {count} task(s) enqueued again")
                run = InvoiceRun.objects.get(pk=resume)
            else:
                if not period:
                    raise CommandError("--period is required to start a run.")
                brand_obj = Brand.objects.get(code=brand) if brand else None
                run = services.invoice_run_start(
                    period=period, brand=brand_obj, mode=mode, chunk_size=chunk_size
                )
        except (DomainError, Brand.DoesNotExist, InvoiceRun.DoesNotExist) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"run {run.pk}: {run.status}")
        while wait:
            run.refresh_from_db()
            self.stdout.write(
                f"run {run.pk}: {run.status} {run.processed}/{run.total} processed, "
                f"{run.failed} failed, {run.invoices_issued} invoices"
            )
            if run.status in (
                InvoiceRun.Status.COMPLETED,
                InvoiceRun.Status.DRAFT_READY,
                InvoiceRun.Status.FAILED,
            ):
                break
            time.sleep(1)
