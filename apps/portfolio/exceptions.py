from __future__ import annotations

from rest_framework import status

from k2.api.exceptions import ApplicationError


class PositionNotFound(ApplicationError):
    code = "POSITION_NOT_FOUND"
    status_code = status.HTTP_404_NOT_FOUND
    default_message = "No position in this instrument."
