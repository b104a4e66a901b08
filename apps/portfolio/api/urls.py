from django.urls import path

from apps.portfolio.api import views

urlpatterns = [
    path("portfolio/summary", views.PortfolioSummaryApi.as_view(), name="portfolio-summary"),
    path("portfolio/balances", views.PortfolioBalancesApi.as_view(), name="portfolio-balances"),
    path("portfolio/positions", views.PortfolioPositionsApi.as_view(), name="portfolio-positions"),
    path(
        "portfolio/positions/<str:instrument>",
        views.PortfolioPositionDetailApi.as_view(),
        name="portfolio-position-detail",
    ),
    path("portfolio/performance", views.PortfolioPerformanceApi.as_view(), name="portfolio-performance"),
]
