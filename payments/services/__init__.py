"""Payment intake services: every write of the payments app.

* ``registries``: preview, apply and import agents' registry files;
* ``suspense``: assign or return unidentified payments;
* ``items``: the ledger operations of suspense (posted by the ledger's writer).
"""

from payments.services.agents import payment_agent_create, registry_layout_create
from payments.services.registries import (
    layout_of,
    registry_apply,
    registry_import,
    registry_preview,
)
from payments.services.rules import payment_rule_set
from payments.services.suspense import suspense_assign, suspense_return

__all__ = [
    "layout_of",
    "payment_agent_create",
    "payment_rule_set",
    "registry_apply",
    "registry_import",
    "registry_layout_create",
    "registry_preview",
    "suspense_assign",
    "suspense_return",
]
