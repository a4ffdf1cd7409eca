"""What an outbox message attaches, built when it is sent.

Apps register a builder per kind (``invoicing`` registers ``invoice_pdf``);
a message names ``{"kind": ..., "ref": ...}`` and the builder returns the
file. The outbox itself knows nothing of invoices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mimetype: str


Builder = Callable[[str], Attachment]
_builders: dict[str, Builder] = {}


class UnknownAttachment(LookupError):
    pass


def register(kind: str) -> Callable[[Builder], Builder]:
    """``@register("invoice_pdf")`` on a function ``ref -> Attachment``."""

    def decorate(builder: Builder) -> Builder:
        _builders[kind] = builder
        return builder

    return decorate


def build(spec: dict) -> Attachment:
    try:
        builder = _builders[spec["kind"]]
    except KeyError:
        raise UnknownAttachment(f"No attachment builder for {spec!r}.") from None
    return builder(str(spec.get("ref", "")))
