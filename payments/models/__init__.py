"""The tables of payment intake, one module per concern:

* ``intake``: agents, registry layouts, registries, claimed agent payments,
  suspense items and payment rules (see its design overview);
* ``gateway``: online payment intents, the outbox of calls to the gateway, the
  callbacks received, and refund sagas;
* ``settlements``: what was collected for each brand, and its payout.
"""

from payments.models.gateway import (
    GatewayCall,
    GatewayCallback,
    PaymentIntent,
    RefundSaga,
    RefundSagaStep,
)
from payments.models.intake import (
    MONEY,
    AgentPayment,
    PaymentAgent,
    PaymentRule,
    Registry,
    RegistryFormat,
    RegistryLayout,
    SuspenseItem,
)
from payments.models.settlements import Settlement, SettlementItem, SettlementTerms

__all__ = [
    "MONEY",
    "AgentPayment",
    "GatewayCall",
    "GatewayCallback",
    "PaymentAgent",
    "PaymentIntent",
    "PaymentRule",
    "RefundSaga",
    "RefundSagaStep",
    "Registry",
    "RegistryFormat",
    "RegistryLayout",
    "Settlement",
    "SettlementItem",
    "SettlementTerms",
    "SuspenseItem",
]
