"""ASGI entry point: Django (DRF, admin) over HTTP, Channels consumers over WebSocket."""

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "k2.settings")
django.setup(set_prefix=False)

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from k2.handlers import SyncChainASGIHandler  # noqa: E402
from k2.routing import websocket_application  # noqa: E402

django_asgi_app = SyncChainASGIHandler()

application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_application})

# Everything loaded by now (settings, apps, models, URL patterns: ~140k objects) lives as long
# as the process. Freezing it takes it out of the cycle collector's sight: a full collection
# would otherwise walk all of it, a ~70 ms stall for every request in flight at that moment.
get_resolver().url_patterns  # noqa: B018 (imports every view module before the freeze)
gc.freeze()
