from django.urls import path

from apps.marketdata.api import views

urlpatterns = [
    path("instruments", views.InstrumentListApi.as_view(), name="instrument-list"),
    path("instruments/<str:symbol>", views.InstrumentDetailApi.as_view(), name="instrument-detail"),
    path("prices", views.PriceBatchApi.as_view(), name="price-batch"),
    path("prices/<str:symbol>", views.PriceApi.as_view(), name="price-detail"),
    path("candles/<str:symbol>", views.CandleListApi.as_view(), name="candle-list"),
    path("watchlists", views.WatchlistListCreateApi.as_view(), name="watchlist-list"),
    path("watchlists/shared/<str:token>", views.SharedWatchlistApi.as_view(), name="watchlist-shared"),
    path("watchlists/shared/<str:token>/copy", views.SharedWatchlistCopyApi.as_view(), name="watchlist-copy"),
    path("watchlists/<uuid:watchlist_id>", views.WatchlistDetailApi.as_view(), name="watchlist-detail"),
    path("watchlists/<uuid:watchlist_id>/items", views.WatchlistItemAddApi.as_view(), name="watchlist-items"),
    path(
        "watchlists/<uuid:watchlist_id>/items/<str:symbol>",
        views.WatchlistItemRemoveApi.as_view(),
        name="watchlist-item",
    ),
    path("watchlists/<uuid:watchlist_id>/share", views.WatchlistShareApi.as_view(), name="watchlist-share"),
]
