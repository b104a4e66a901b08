from django.urls import path

from k2.urls import urlpatterns as k2_urlpatterns
from tests.k2 import api_views

urlpatterns = [
    path("v1/test/echo", api_views.EchoView.as_view()),
    path("v1/test/boom", api_views.BoomView.as_view()),
    path("v1/test/protected", api_views.ProtectedView.as_view()),
    path("v1/test/forbidden", api_views.ForbiddenView.as_view()),
    path("v1/test/conflict", api_views.ConflictView.as_view()),
    path("v1/test/throttled", api_views.ThrottledView.as_view()),
    path("v1/test/entries", api_views.EntryListView.as_view()),
    path("v1/test/rendezvous", api_views.RendezvousView.as_view()),
    *k2_urlpatterns,
]

handler400 = "k2.api.views.bad_request"
handler403 = "k2.api.views.permission_denied"
handler404 = "k2.api.views.not_found"
handler500 = "k2.api.views.server_error"
