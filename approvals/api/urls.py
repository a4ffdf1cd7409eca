from rest_framework.routers import SimpleRouter

from approvals.api import views

router = SimpleRouter()
router.register("approval-requests", views.ApprovalRequestViewSet, basename="approval-request")

urlpatterns = router.urls
