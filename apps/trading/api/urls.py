from django.urls import path

from apps.trading.api import views

urlpatterns = [
    path("orders", views.OrderListCreateApi.as_view(), name="orders"),
    path("orders/<uuid:order_id>", views.OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<uuid:order_id>/executions", views.OrderExecutionListApi.as_view(), name="order-executions"),
    path("trades", views.TradeListApi.as_view(), name="trades"),
]
