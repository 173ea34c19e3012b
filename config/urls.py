from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularJSONAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    # The OpenAPI 3.1 document of POST /event and the quiz API (docs/HTTP.md).
    path("api/schema/", SpectacularJSONAPIView.as_view(), name="openapi-schema"),
    path("", include("realtime.urls")),
    path("", include("quiz.urls")),
    path("", RedirectView.as_view(pattern_name="realtime:console", permanent=False)),
]
