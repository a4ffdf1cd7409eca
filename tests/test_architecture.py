"""The import contracts of pyproject.toml hold, and a wrong import breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _copy_project(target: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    for package in _contracts()["root_packages"]:
        shutil.copytree(
            ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__")
        )


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=where,
        env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("project")
    _copy_project(target)
    return target


def test_the_layout_keeps_every_contract(project_copy: Path) -> None:
    result = _lint(project_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        # The ledger reaching up into invoicing.
        ("ledger/selectors.py", "import invoicing.models", "nothing imports upwards"),
        # Maker-checker reaching up into the moves it approves (they register instead).
        ("approvals/services.py", "import ledger.services", "nothing imports upwards"),
        # The kernel reaching into an app.
        ("core/errors.py", "import accounts.models", "it imports no app"),
        # The ledger calling a side context instead of emitting a signal.
        ("ledger/signals.py", "import partners.webhooks", "import no side context"),
        # An app importing the project package.
        ("invoicing/selectors.py", "import billing_site.settings", "imported by no app"),
        # An app reaching into the staff UI's cross-app pages (they read the apps, not back).
        ("partners/webhooks.py", "import backoffice.selectors", "imported by no app but the demo"),
        ("reports/apps.py", "import backoffice.roles", "nothing imports upwards"),
        # An app leaning on the demo data (which sits on top and calls the apps).
        ("reports/__init__.py", "import demo.seed", "imported by no app"),
    ],
)
def test_a_wrong_import_breaks_a_contract(
    tmp_path: Path, module: str, wrong_import: str, contract: str
) -> None:
    _copy_project(tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{wrong_import}  # deliberately wrong\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), result.stdout
