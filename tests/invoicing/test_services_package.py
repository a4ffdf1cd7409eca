"""``invoicing.services`` is a package: its public names and the q2 task paths stay put."""

import ast
import importlib
import pkgutil
import pydoc
from pathlib import Path
from types import ModuleType

import pytest

from invoicing import services

# Dotted paths django-q2 stores in its task and schedule rows (``async_task``, ``Schedule``).
TASK_PATHS = [
    "invoicing.tasks.invoice_run_plan",
    "invoicing.tasks.invoice_run_chunk",
    "invoicing.tasks.invoice_run_monthly",
    "invoicing.tasks.penalties_daily",
    "invoicing.tasks.invoice_documents_deliver",
]


def _modules() -> list[ModuleType]:
    return [
        importlib.import_module(f"{services.__name__}.{info.name}")
        for info in pkgutil.iter_modules(services.__path__)
    ]


def _defined_names(module: ModuleType) -> set[str]:
    """Top-level functions, classes and assignments of the module's source."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def test_every_public_name_of_the_modules_is_exported_from_the_package():
    missing = [
        f"{module.__name__}.{name}"
        for module in _modules()
        for name in sorted(_defined_names(module))
        if not name.startswith("_") and name != "logger" and name not in services.__all__
    ]
    assert missing == []


def test_every_exported_name_is_the_object_of_its_module():
    for name in services.__all__:
        value = getattr(services, name)
        owner = getattr(value, "__module__", None)
        if owner and owner.startswith(f"{services.__name__}."):
            assert getattr(importlib.import_module(owner), name) is value, name


def test_each_module_is_small_and_documented():
    for module in _modules():
        lines = Path(module.__file__).read_text(encoding="utf-8").count("\n")
        assert lines < 800, (module.__name__, lines)
        assert module.__doc__ and module.__doc__.strip(), module.__name__


@pytest.mark.parametrize("path", TASK_PATHS)
def test_task_paths_stored_by_django_q_still_resolve(path):
    assert callable(pydoc.locate(path)), path
