"""Accounts API: thin views over `apps.accounts.services` and `selectors`."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import selectors, services
from apps.accounts.api import serializers as s
from apps.accounts.choices import OAuthProvider, SessionRevokeReason
from apps.accounts.exceptions import AuthError
from apps.accounts.models import Session, User
from k2.api.pagination import EnvelopeCursorPagination
from k2.api.throttling import AnonRateThrottle, ScopedRateThrottle, UserRateThrottle
from k2.observability.middleware import client_ip

_AUTH_THROTTLES = [AnonRateThrottle, UserRateThrottle, ScopedRateThrottle]
_ERRORS = {
    400: OpenApiResponse(
        description="VALIDATION_ERROR / MALFORMED_REQUEST and domain errors (error envelope)"
    ),
    401: OpenApiResponse(description="INVALID_CREDENTIALS, TOKEN_INVALID, TOKEN_EXPIRED, SESSION_REVOKED, …"),
    429: OpenApiResponse(description="RATE_LIMITED, with Retry-After"),
}


def _client(request: Request, data: dict[str, Any] | None = None) -> services.ClientInfo:
    return services.ClientInfo(
        ip=client_ip(request),
        user_agent=request.headers.get("User-Agent", "")[:512],
        device_name=str((data or {}).get("device_name") or ""),
    )


def _validated(serializer_class: type[s.serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _auth_result(result: services.LoginResult) -> dict[str, Any]:
    body: dict[str, Any]
    if result.challenge is not None:
        body = {
            "status": "two_factor_required",
            "challenge_token": result.challenge.challenge_token,
            "challenge_expires_at": result.challenge.expires_at,
        }
    else:
        assert result.tokens is not None
        pair = result.tokens
        body = {
            "status": "authenticated",
            "token_type": "Bearer",
            "access_token": pair.access_token,
            "access_expires_at": pair.access_expires_at,
            "expires_in": max(0, int((pair.access_expires_at - timezone.now()).total_seconds())),
            "refresh_token": pair.refresh_token,
            "refresh_expires_at": pair.refresh_expires_at,
            "session_id": pair.session.id,
            "user": s.UserSerializer(result.user).data,
        }
    if result.created:
        body["created"] = True
    return body


class _AnonymousAuthApi(APIView):
    """Endpoints a signed-out client calls: no auth (a stale token must not get in the way),
    per-IP rate limits on top of the default ones."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = _AUTH_THROTTLES
    throttle_scope = "auth"


class RegisterApi(_AnonymousAuthApi):
    throttle_scope = "auth_email"

    @extend_schema(
        tags=["auth"],
        summary="Create an account",
        description=(
            "Always answers 202 with the same body, whether or not the address already has an "
            "account (no user enumeration). A new address gets a verification email; an address "
            "that is taken gets an email telling its owner. Then sign in with /v1/auth/login."
        ),
        request=s.RegisterInputSerializer,
        responses={202: s.AcceptedSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.RegisterInputSerializer, request)
        services.user_register(email=data["email"], password=data["password"])
        return Response(
            {"detail": "If this address can be registered, we have sent it a verification email."},
            status=status.HTTP_202_ACCEPTED,
        )


class VerifyEmailApi(_AnonymousAuthApi):
    @extend_schema(
        tags=["auth"],
        summary="Confirm an email address with the emailed token",
        request=s.VerifyEmailInputSerializer,
        responses={200: s.EmailVerifiedSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.VerifyEmailInputSerializer, request)
        user = services.email_verify(token=data["token"])
        return Response({"email_verified": user.email_verified})


class LoginApi(_AnonymousAuthApi):
    @extend_schema(
        tags=["auth"],
        summary="Sign in with email and password",
        description=(
            "Answers `status: authenticated` with tokens, or `status: two_factor_required` with a "
            "short-lived challenge token to complete at /v1/auth/2fa/verify. Failed attempts are "
            "limited per account and per IP (429 with Retry-After)."
        ),
        request=s.LoginInputSerializer,
        responses={200: s.AuthResultSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.LoginInputSerializer, request)
        result = services.auth_login(
            email=data["email"], password=data["password"], client=_client(request, data)
        )
        return Response(_auth_result(result))


class TokenRefreshApi(_AnonymousAuthApi):
    @extend_schema(
        tags=["auth"],
        summary="Rotate the refresh token",
        description=(
            "Returns a new access and refresh token; the one sent is spent. Sending a spent "
            "refresh token again revokes its session (REFRESH_TOKEN_REUSED)."
        ),
        request=s.RefreshInputSerializer,
        responses={200: s.AuthResultSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.RefreshInputSerializer, request)
        pair = services.session_refresh(refresh_token=data["refresh_token"], client=_client(request))
        result = services.LoginResult(user=pair.session.user, tokens=pair)
        return Response(_auth_result(result))


class _OAuthApi(_AnonymousAuthApi):
    provider: str = ""

    def post(self, request: Request) -> Response:
        data = _validated(s.OAuthInputSerializer, request)
        result = services.oauth_login(
            provider=self.provider,
            id_token=data["id_token"],
            nonce=data.get("nonce"),
            client=_client(request, data),
        )
        return Response(_auth_result(result))


_OAUTH_DESCRIPTION = (
    "The client signs in with {name} and sends the ID token it received (and the raw nonce). "
    "K2 verifies signature (provider JWKS), issuer, audience, expiry and nonce, then signs the "
    "user in, creating the account on first sign-in (only from an email address the provider "
    "has verified, else OAUTH_EMAIL_REQUIRED). With 2FA on, answers two_factor_required."
)


class GoogleOAuthApi(_OAuthApi):
    provider = OAuthProvider.GOOGLE

    @extend_schema(
        tags=["auth"],
        summary="Sign in with Google",
        description=_OAUTH_DESCRIPTION.format(name="Google"),
        request=s.OAuthInputSerializer,
        responses={200: s.AuthResultSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class AppleOAuthApi(_OAuthApi):
    provider = OAuthProvider.APPLE

    @extend_schema(
        tags=["auth"],
        summary="Sign in with Apple",
        description=_OAUTH_DESCRIPTION.format(name="Apple"),
        request=s.OAuthInputSerializer,
        responses={200: s.AuthResultSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class TwoFactorEnableApi(APIView):
    throttle_classes = _AUTH_THROTTLES
    throttle_scope = "auth"

    @extend_schema(
        tags=["auth"],
        summary="Start TOTP enrolment",
        description="Returns the seed, an otpauth:// URI and QR images. 2FA turns on at /v1/auth/2fa/verify.",
        request=s.EmptyInputSerializer,
        responses={
            200: s.TwoFactorEnrolmentSerializer,
            409: OpenApiResponse(description="TWO_FACTOR_ALREADY_ENABLED"),
        },
    )
    def post(self, request: Request) -> Response:
        _validated(s.EmptyInputSerializer, request)
        enrolment = services.totp_enable(user=_me(request))
        return Response(
            {
                "secret": enrolment.secret,
                "otpauth_uri": enrolment.otpauth_uri,
                "qr_code_png": enrolment.qr_code_png,
                "qr_code_svg": enrolment.qr_code_svg,
                "digits": enrolment.digits,
                "period": enrolment.period,
            }
        )


class TwoFactorVerifyApi(APIView):
    permission_classes = [AllowAny]
    throttle_classes = _AUTH_THROTTLES
    throttle_scope = "auth"

    @extend_schema(
        tags=["auth"],
        summary="Confirm 2FA enrolment, or complete a sign-in challenge",
        description=(
            "With `challenge_token` (from login): send `code` or a one-time `recovery_code`; "
            "answers like /v1/auth/login. Without it (signed in): confirms enrolment with `code` "
            "and returns the recovery codes, shown only this once."
        ),
        request=s.TwoFactorVerifyInputSerializer,
        responses={200: s.TwoFactorVerifyResultSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.TwoFactorVerifyInputSerializer, request)
        if data.get("challenge_token"):
            result = services.auth_two_factor_login(
                challenge_token=data["challenge_token"],
                code=data.get("code"),
                recovery_code=data.get("recovery_code"),
                client=_client(request, data),
            )
            return Response(_auth_result(result))
        if not isinstance(request.user, User):
            raise AuthError(
                "Sign in first, or send the challenge_token from /v1/auth/login.", code="UNAUTHENTICATED"
            )
        codes = services.totp_confirm(user=_me(request), code=data["code"])
        return Response({"two_factor_enabled": True, "recovery_codes": codes})


class TwoFactorDisableApi(APIView):
    throttle_classes = _AUTH_THROTTLES
    throttle_scope = "auth"

    @extend_schema(
        tags=["auth"],
        summary="Turn 2FA off",
        request=s.TwoFactorDisableInputSerializer,
        responses={200: s.TwoFactorDisabledSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.TwoFactorDisableInputSerializer, request)
        services.totp_disable(
            user=_me(request),
            password=data["password"],
            code=data.get("code"),
            recovery_code=data.get("recovery_code"),
        )
        return Response({"two_factor_enabled": False})


class LogoutApi(APIView):
    @extend_schema(
        tags=["auth"],
        summary="End the current session",
        request=s.EmptyInputSerializer,
        responses={200: s.LogoutSerializer, 401: _ERRORS[401]},
    )
    def post(self, request: Request) -> Response:
        _validated(s.EmptyInputSerializer, request)
        services.session_revoke(
            session=_session(request), actor=_me(request), reason=SessionRevokeReason.LOGOUT
        )
        return Response({"logged_out": True})


class SessionListApi(APIView):
    pagination_class = EnvelopeCursorPagination

    @extend_schema(
        tags=["auth"],
        summary="List my active sessions",
        description="Cursor-paginated (`?limit&cursor`); `current` marks the session of this request.",
        responses={200: s.SessionSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        paginator = _SessionPagination()
        page = paginator.paginate_queryset(selectors.session_list(user=_me(request)), request, view=self)
        context = {"current_session_id": _session(request).pk}
        return paginator.get_paginated_response(s.SessionSerializer(page, many=True, context=context).data)

    @extend_schema(
        tags=["auth"],
        summary="Sign out all my other sessions",
        operation_id="auth_sessions_revoke_others",
        request=None,
        responses={200: s.RevokedSerializer},
    )
    def delete(self, request: Request) -> Response:
        count = services.session_revoke_all(
            user=_me(request), actor=_me(request), reason=SessionRevokeReason.USER, keep=_session(request)
        )
        return Response({"revoked": count})


class _SessionPagination(EnvelopeCursorPagination):
    ordering = ("-last_used_at", "-id")


class SessionDetailApi(APIView):
    @extend_schema(
        tags=["auth"],
        summary="Sign out one of my sessions",
        operation_id="auth_sessions_revoke",
        request=None,
        responses={200: s.RevokedSerializer, 404: OpenApiResponse(description="SESSION_NOT_FOUND")},
    )
    def delete(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get_active(user=_me(request), session_id=session_id)
        revoked = services.session_revoke(
            session=session, actor=_me(request), reason=SessionRevokeReason.USER
        )
        return Response({"revoked": int(revoked)})


class PasswordChangeApi(APIView):
    throttle_classes = _AUTH_THROTTLES
    throttle_scope = "auth"

    @extend_schema(
        tags=["auth"],
        summary="Change my password",
        description="Every other session is signed out; this one stays.",
        request=s.PasswordChangeInputSerializer,
        responses={200: s.PasswordChangedSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.PasswordChangeInputSerializer, request)
        revoked = services.password_change(
            user=_me(request),
            session=_session(request),
            current_password=data["current_password"],
            new_password=data["new_password"],
        )
        return Response({"password_changed": True, "sessions_revoked": revoked})


class PasswordResetApi(_AnonymousAuthApi):
    throttle_scope = "auth_email"

    @extend_schema(
        tags=["auth"],
        summary="Email a password reset link",
        description="Always answers 202 with the same body, whether or not the address has an account.",
        request=s.PasswordResetInputSerializer,
        responses={202: s.AcceptedSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.PasswordResetInputSerializer, request)
        services.password_reset_request(email=data["email"])
        return Response(
            {"detail": "If an account uses this address, we have emailed it a reset link."},
            status=status.HTTP_202_ACCEPTED,
        )


class PasswordResetConfirmApi(_AnonymousAuthApi):
    @extend_schema(
        tags=["auth"],
        summary="Set a new password with the emailed token",
        description="Signs out every session of the account.",
        request=s.PasswordResetConfirmInputSerializer,
        responses={200: s.PasswordChangedSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.PasswordResetConfirmInputSerializer, request)
        revoked = services.password_reset_confirm(token=data["token"], new_password=data["new_password"])
        return Response({"password_changed": True, "sessions_revoked": revoked})


class MeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["users"], summary="My profile, settings and preferences", responses={200: s.UserSerializer}
    )
    def get(self, request: Request) -> Response:
        return Response(s.UserSerializer(_me(request)).data)

    @extend_schema(
        tags=["users"],
        summary="Update my settings and preferences",
        description="Read-only fields (email, email_verified, kyc_status, …) are refused: VALIDATION_ERROR.",
        request=s.UserUpdateSerializer,
        responses={200: s.UserSerializer, **_ERRORS},
    )
    def patch(self, request: Request) -> Response:
        serializer = s.UserUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        user = services.user_profile_update(user=_me(request), data=dict(serializer.validated_data))
        return Response(s.UserSerializer(user).data)


def _me(request: Request) -> User:
    """The signed-in user (views reaching here passed IsAuthenticated with JWTAuthentication)."""
    user = request.user
    if not isinstance(user, User):
        raise AuthError("Authentication credentials were not provided.", code="UNAUTHENTICATED")
    return user


def _session(request: Request) -> Session:
    session = request.auth
    if not isinstance(session, Session):
        raise AuthError("Authentication credentials were not provided.", code="UNAUTHENTICATED")
    return session
