"""End-to-end tests of the staff UI in real headless Chromium (Debian's ``chromium``
package, driven by Playwright for Python) against pytest-django's live server.

Marked ``e2e``; they run in ``make test``. Without a ``chromium`` executable they are
skipped with that reason (``.ci/run`` installs it). Screenshots of the pages they pass
through are written to ``test-artifacts/screenshots/`` (ignored by git), or to the folder
``E2E_SCREENSHOTS`` names: ``E2E_SCREENSHOTS=docs/screenshots`` refreshes the documentation's.
"""

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / os.environ.get("E2E_SCREENSHOTS", "test-artifacts/screenshots")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)
            if CHROMIUM is None:
                item.add_marker(
                    pytest.mark.skip(
                        reason="no chromium executable on PATH (apt-get install chromium)"
                    )
                )


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module, closed with it. Playwright's sync API keeps an event
    loop running in this thread meanwhile, so Django's guard against ORM calls from async
    code is lifted for that time (the tests' own ORM calls are plain synchronous ones)."""
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(
        base_url=live_server.url, locale="en-US", viewport={"width": 1400, "height": 900}
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot():
    def _shot(page, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    return _shot


def login(page, username: str, password: str = "password") -> None:
    page.goto("/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-submit")
    page.wait_for_selector("#main-menu")
