"""Stable error codes of the accounts API (rendered by `k2.api.exceptions.exception_handler`)."""

from __future__ import annotations

from rest_framework import status

from k2.api.exceptions import ApplicationError


class AuthError(ApplicationError):
    status_code = status.HTTP_401_UNAUTHORIZED


class InvalidCredentials(AuthError):
    code = "INVALID_CREDENTIALS"
    default_message = "The email or password is incorrect."


class AccountDisabled(AuthError):
    code = "ACCOUNT_DISABLED"
    default_message = "This account is disabled."


class TokenInvalid(AuthError):
    code = "TOKEN_INVALID"
    default_message = "The token is invalid."


class TokenExpired(AuthError):
    code = "TOKEN_EXPIRED"
    default_message = "The token has expired."


class SessionRevoked(AuthError):
    code = "SESSION_REVOKED"
    default_message = "This session has ended. Sign in again."


class RefreshTokenReused(AuthError):
    code = "REFRESH_TOKEN_REUSED"
    default_message = "This refresh token was already used; the session has been revoked. Sign in again."


class TwoFactorInvalid(AuthError):
    code = "TWO_FACTOR_INVALID"
    default_message = "The verification code is invalid."


class TwoFactorRequired(ApplicationError):
    code = "TWO_FACTOR_REQUIRED"
    status_code = status.HTTP_403_FORBIDDEN
    default_message = "A two-factor code is required."


class TwoFactorNotEnabled(ApplicationError):
    code = "TWO_FACTOR_NOT_ENABLED"
    status_code = status.HTTP_409_CONFLICT
    default_message = "Two-factor authentication is not enabled."


class TwoFactorAlreadyEnabled(ApplicationError):
    code = "TWO_FACTOR_ALREADY_ENABLED"
    status_code = status.HTTP_409_CONFLICT
    default_message = "Two-factor authentication is already enabled."


class TwoFactorEnrolmentMissing(ApplicationError):
    code = "TWO_FACTOR_ENROLMENT_MISSING"
    status_code = status.HTTP_409_CONFLICT
    default_message = "Start enrolment with /v1/auth/2fa/enable first."


class PasswordIncorrect(ApplicationError):
    code = "PASSWORD_INCORRECT"
    status_code = status.HTTP_400_BAD_REQUEST
    default_message = "The current password is incorrect."


class PasswordNotSet(ApplicationError):
    code = "PASSWORD_NOT_SET"
    status_code = status.HTTP_409_CONFLICT
    default_message = "This account signs in with Google or Apple and has no password; use password reset."


class EmailTokenInvalid(ApplicationError):
    code = "EMAIL_TOKEN_INVALID"
    status_code = status.HTTP_400_BAD_REQUEST
    default_message = "The link is invalid, expired or already used."


class OAuthTokenInvalid(AuthError):
    code = "OAUTH_TOKEN_INVALID"
    default_message = "The identity token could not be verified."


class OAuthProviderUnavailable(ApplicationError):
    code = "OAUTH_PROVIDER_UNAVAILABLE"
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_message = "The identity provider's keys could not be fetched. Try again shortly."


class OAuthNotConfigured(ApplicationError):
    code = "OAUTH_NOT_CONFIGURED"
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_message = "This sign-in method is not configured."


class OAuthEmailConflict(ApplicationError):
    code = "OAUTH_EMAIL_CONFLICT"
    status_code = status.HTTP_409_CONFLICT
    default_message = (
        "An account with this email exists and the provider has not verified the address. "
        "Sign in with your password instead."
    )


class OAuthEmailRequired(ApplicationError):
    code = "OAUTH_EMAIL_REQUIRED"
    status_code = status.HTTP_400_BAD_REQUEST
    default_message = "The identity token carries no email address; K2 needs one to create an account."


class SessionNotFound(ApplicationError):
    code = "SESSION_NOT_FOUND"
    status_code = status.HTTP_404_NOT_FOUND
    default_message = "No active session with this id."
