from django.urls import path
from rest_framework.routers import SimpleRouter

from payments.api import gateway, settlements, views

router = SimpleRouter()
router.register("payment-agents", views.PaymentAgentViewSet, basename="payment-agent")
router.register("registries", views.RegistryViewSet, basename="registry")
router.register("suspense", views.SuspenseViewSet, basename="suspense")
router.register("payment-intents", gateway.PaymentIntentViewSet, basename="payment-intent")
router.register("settlements", settlements.SettlementViewSet, basename="settlement")

urlpatterns = [
    *router.urls,
    path("reconciliation/", views.ReconciliationView.as_view(), name="reconciliation"),
]
