from rest_framework.routers import SimpleRouter

from accounts.api.views import AccountViewSet, ClientViewSet

router = SimpleRouter()
router.register("clients", ClientViewSet, basename="client")
router.register("accounts", AccountViewSet, basename="account")

urlpatterns = router.urls
