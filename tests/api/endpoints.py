"""Every served endpoint, read from the OpenAPI schema, with what its view says it needs.

Built when the tests are collected, so a new endpoint is covered by the
permission tests without anyone listing it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator

from core.api.permissions import requirement_of

METHODS = ("get", "post", "put", "patch", "delete")
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Reads that take their question as a body: running an ad-hoc report definition.
READS_BY_POST = {"POST /api/v1/reports/adhoc/"}
MISSING_ID = 999_999_999


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as in the schema: /api/v1/accounts/{id}/block/
    capability: str | None
    permission: str | None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def resource(self) -> str:
        return self.path.removeprefix("/api/v1/").split("/", 1)[0]

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS and str(self) not in READS_BY_POST

    def url(self, ids: dict[str, int] | None = None) -> str:
        ident = (ids or {}).get(self.resource, MISSING_ID)
        return self.path.replace("{id}", str(ident))


def _requirement(method: str, path: str) -> tuple[str, str] | tuple[None, None]:
    func = resolve(path.replace("{id}", "1")).func
    actions = getattr(func, "actions", None)
    action = actions.get(method.lower()) if actions else method.lower()
    return requirement_of(func.cls, action) or (None, None)


def served_endpoints() -> list[Endpoint]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sorted(
        (
            Endpoint(method.upper(), path, *_requirement(method, path))
            for path, operations in schema["paths"].items()
            for method in operations
            if method in METHODS
        ),
        key=str,
    )


ENDPOINTS = served_endpoints()
WRITES = [e for e in ENDPOINTS if e.is_write]
READS = [e for e in ENDPOINTS if not e.is_write]
