from rest_framework.routers import SimpleRouter

from ledger.api import views

router = SimpleRouter()
# The hot routes first (balance reads, debits): the resolver tries patterns in order.
# Balance and history of an account (the account itself is served by accounts.api).
router.register("accounts", views.AccountLedgerViewSet, basename="account-ledger")
router.register("debits", views.DebitViewSet, basename="debit")
router.register("payments", views.PaymentViewSet, basename="payment")
router.register("accruals", views.AccrualViewSet, basename="accrual")
router.register("transfers", views.TransferViewSet, basename="transfer")
router.register("refunds", views.RefundViewSet, basename="refund")
router.register("transactions", views.TransactionViewSet, basename="transaction")
router.register("holds", views.HoldViewSet, basename="hold")

urlpatterns = router.urls
