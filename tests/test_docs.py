"""The documentation in docs/ stays true: the API page lists exactly the served endpoints,
and README links only inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.api.conftest import api_client

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("get", "post", "put", "patch", "delete")
# `GET /accounts/{id}/balance/`: a method and a path relative to /api/v1, in backticks.
ENDPOINT = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[a-z0-9_\-{}/]*)")


def documented_endpoints() -> set[tuple[str, str]]:
    text = (ROOT / "docs" / "api.md").read_text()
    return {(method, f"/api/v1{path}") for method, path in ENDPOINT.findall(text)}


def served_endpoints() -> set[tuple[str, str]]:
    schema = yaml.safe_load(api_client().get("/api/schema/").content)
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in METHODS
    }


def test_docs_api_lists_exactly_the_served_endpoints(db):
    documented, served = documented_endpoints(), served_endpoints()
    assert served - documented == set(), "served but not in docs/api.md"
    assert documented - served == set(), "in docs/api.md but not served"


def test_readme_and_docs_link_only_inside_the_repository():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        assert "../shared" not in text, path
        for target in re.findall(r"\]\(([^)#]+)", text):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{path.name} links to missing {target}"
