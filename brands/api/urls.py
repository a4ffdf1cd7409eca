from rest_framework.routers import SimpleRouter

from brands.api.views import BrandViewSet, ServiceViewSet

router = SimpleRouter()
router.register("brands", BrandViewSet, basename="brand")
router.register("services", ServiceViewSet, basename="service")

urlpatterns = router.urls
