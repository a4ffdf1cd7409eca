# Quick start: `make run` (install, database, migrations, demo data, web + q2 cluster,
# with DEBUG=1 for development)
# and `make test`. Everything installs into .venv from requirements.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_CLIENTS ?= 2000

.PHONY: run test install messages db dbserver db-stop migrate demo lint format bench bench-api bench-pdf bench-invoice bench-ingest bench-month-end bench-ui bench-reports verify clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

# Without DATABASE_URL and without a server on 127.0.0.1:5432, these start the embedded
# PostgreSQL in ./.pgdata (billing_site/embedded_pg.py); it keeps running until db-stop.
db: install
	$(PY) -m billing_site.ensure_db

dbserver: install
	$(PY) -m billing_site.ensure_db --server-only

db-stop: install
	$(PY) -m billing_site.embedded_pg stop

# As the owner (MIGRATION_DATABASE_URL); it ends with setup_db_roles, which creates the
# runtime role (DATABASE_URL) and grants it its privileges (billing_site/database.py).
migrate: db
	$(PY) manage.py migrate --no-input
	$(PY) manage.py ensure_schedules
	$(PY) manage.py ensure_roles

demo: migrate
	$(PY) manage.py seed_demo --clients $(DEMO_CLIENTS) --if-empty --seed 42

run: demo
	$(PY) manage.py collectstatic --no-input --verbosity 0
	@echo "Staff UI: http://$(HOST):$(PORT)/   admin: http://$(HOST):$(PORT)/admin/"
	@echo "Demo logins: operator / operator, accountant / accountant, admin / admin (administrator)"
	DEBUG=$${DEBUG:-1} $(PY) manage.py qcluster & QPID=$$!; \
	trap 'kill $$QPID 2>/dev/null' EXIT INT TERM; \
	DEBUG=$${DEBUG:-1} $(PY) manage.py runserver $(HOST):$(PORT)

test: dbserver
	$(PY) -m pytest

# The staff UI's translations: locale/ru/LC_MESSAGES/django.mo is committed; this rebuilds it
# from the .po (needs gettext's msgfmt).
messages: install
	$(PY) manage.py compilemessages --ignore=.venv --verbosity 0

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

verify: install
	$(PY) manage.py ledger_verify

bench: install
	$(PY) bench/posting.py

# REST API under gunicorn (DEBUG=0) on its own database billing_api; Python load generator.
bench-api: install
	$(PY) bench/api.py

# Invoice PDFs/s through the bulk q2 path (2 workers) on its own database billing_pdf_bench.
bench-pdf: install
	$(PY) bench/invoice_pdf.py

# Invoice run accounts/s (100,000 accounts, 2 q2 workers) on INVOICE_BENCH_DATABASE_URL
# (default billing_inv); each run adds its own brand and accounts.
bench-invoice: install
	$(PY) bench/invoice_run.py

# ingest_usage records/s for a 1,000,000-record CSV next to a plain COPY of the same file.
bench-ingest: install
	$(PY) bench/ingest.py

# The whole month-end (ingest, readings, invoice run on 2 q2 workers, PDF and email sample)
# for MONTH_END_ACCOUNTS accounts on INVOICE_BENCH_DATABASE_URL: per-phase times, peak RSS.
MONTH_END_ACCOUNTS ?= 100000
bench-month-end: install
	$(PY) bench/month_end.py --accounts $(MONTH_END_ACCOUNTS)

# Reports on REPORTS_BENCH_DATABASE_URL (default billing_reports_bench): statement p50/p99,
# turnover sheet, 1,000,000-row XLSX export, posting with and without the projector.
# REPORTS_BENCH_ENTRIES sets the ledger size (10,000,000 by default; written once per size).
REPORTS_BENCH_ENTRIES ?= 10000000
bench-reports: install
	$(PY) bench/reports.py --entries $(REPORTS_BENCH_ENTRIES)

# Staff UI pages' server time (p50/p95) with 100,000 demo clients on its own database
# (BENCH_UI_DATABASE_URL, default billing_ui_bench; seeded on first use).
bench-ui: install
	$(PY) bench/ui_pages.py

clean:
	rm -rf $(VENV) staticfiles
