from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.marketdata import services
from apps.marketdata.models import Candle, Instrument, MarketTrade, Watchlist, WatchlistItem


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ("symbol", "venue", "instrument_type", "status", "tick_size", "quantity_step", "synced_at")
    list_filter = ("venue", "instrument_type", "status")
    search_fields = ("symbol", "venue_symbol", "event_ticker", "series_ticker", "title")
    readonly_fields = ("synced_at", "created_at", "updated_at")
    actions = ("sync_venue",)

    @admin.action(description="Sync the selected instruments' venues now")
    def sync_venue(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> None:
        for venue in sorted(set(queryset.values_list("venue", flat=True))):
            result = services.instruments_sync(venue=venue)[venue]
            level = messages.ERROR if isinstance(result, str) else messages.SUCCESS
            self.message_user(request, f"{venue}: {result}", level)


@admin.register(Candle)
class CandleAdmin(admin.ModelAdmin):
    list_display = ("instrument", "interval", "start", "open", "high", "low", "close", "volume", "source")
    list_filter = ("interval", "source", "instrument__venue")
    search_fields = ("instrument__symbol",)
    list_select_related = ("instrument",)
    raw_id_fields = ("instrument",)
    date_hierarchy = "start"

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(MarketTrade)
class MarketTradeAdmin(admin.ModelAdmin):
    list_display = ("instrument", "trade_id", "price", "quantity", "taker_side", "time")
    search_fields = ("instrument__symbol", "=trade_id")
    list_select_related = ("instrument",)
    raw_id_fields = ("instrument",)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class WatchlistItemInline(admin.TabularInline):
    model = WatchlistItem
    raw_id_fields = ("instrument",)
    extra = 0


@admin.register(Watchlist)
class WatchlistAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "created_at", "shared_at")
    search_fields = ("name", "user__email", "=id")
    list_select_related = ("user",)
    raw_id_fields = ("user", "copied_from")
    readonly_fields = ("share_token", "shared_at")
    inlines = (WatchlistItemInline,)
