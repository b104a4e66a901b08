from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import JSONRenderer

from k2.api.envelope import wrap


class EnvelopeJSONRenderer(JSONRenderer):
    """Wraps every DRF response in the architecture's envelope (section 6.2)."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        renderer_context = renderer_context or {}
        response = renderer_context.get("response")
        if response is None or response.status_code == 204:
            return super().render(data, accepted_media_type, renderer_context)
        extra_meta = getattr(response, "envelope_meta", None)
        body = wrap(data, status_code=response.status_code, extra_meta=extra_meta)
        return super().render(body, accepted_media_type, renderer_context)
