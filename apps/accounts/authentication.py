"""DRF authentication with K2 access tokens: `Authorization: Bearer <access token>`.

`request.user` is the user and `request.auth` the `Session` the token belongs to. A token
whose session was revoked fails on the next request (see `selectors.user_from_access_token`).
"""

from __future__ import annotations

import structlog
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from apps.accounts.exceptions import TokenInvalid
from apps.accounts.models import Session, User
from apps.accounts.selectors import user_from_access_token
from apps.accounts.services import session_touch


class JWTAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[User, Session] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise TokenInvalid("The Authorization header must be 'Bearer <token>'.")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise TokenInvalid() from None
        user, session = user_from_access_token(token)
        structlog.contextvars.bind_contextvars(user_id=str(user.id))
        session_touch(session=session)
        return user, session

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
