"""Root URLconf: the API under /v1/, schema and docs, probes, admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from k2.api import views as api_views

v1_patterns: list = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("", include("apps.exchanges.api.urls")),
    path("", include("apps.accounts.api.urls")),
    path("", include("apps.trading.api.urls")),
    path("", include("apps.marketdata.api.urls")),
    path("", include("apps.portfolio.api.urls")),
]

urlpatterns = [
    path("v1/", include(v1_patterns)),
    path("healthz", api_views.healthz, name="healthz"),
    path("readyz", api_views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
]

handler400 = "k2.api.views.bad_request"
handler403 = "k2.api.views.permission_denied"
handler404 = "k2.api.views.not_found"
handler500 = "k2.api.views.server_error"
