from rest_framework.routers import SimpleRouter

from brands.api.views import BrandViewSet

router = SimpleRouter()
router.register("brands", BrandViewSet, basename="brand")
# /services/ is served by invoicing.api (the billing API adds POST and PATCH to the
# read-only ServiceViewSet defined here).

urlpatterns = router.urls
