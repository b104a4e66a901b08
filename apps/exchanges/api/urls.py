from django.urls import path

from apps.exchanges.api import views

urlpatterns = [
    path("auth/link/<str:venue>/initiate", views.LinkInitiateApi.as_view(), name="exchange-link-initiate"),
    path("auth/link/<str:venue>/callback", views.LinkCallbackApi.as_view(), name="exchange-link-callback"),
    path("exchanges/links", views.ExchangeLinkListApi.as_view(), name="exchange-link-list"),
    path(
        "exchanges/links/<uuid:link_id>", views.ExchangeLinkRevokeApi.as_view(), name="exchange-link-revoke"
    ),
]
