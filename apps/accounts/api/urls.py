"""Accounts routes, mounted under /v1/ (no trailing slashes, exactly as documented)."""

from django.urls import path

from apps.accounts.api import views

urlpatterns = [
    path("auth/register", views.RegisterApi.as_view(), name="auth-register"),
    path("auth/verify-email", views.VerifyEmailApi.as_view(), name="auth-verify-email"),
    path("auth/login", views.LoginApi.as_view(), name="auth-login"),
    path("auth/token/refresh", views.TokenRefreshApi.as_view(), name="auth-token-refresh"),
    path("auth/oauth/google", views.GoogleOAuthApi.as_view(), name="auth-oauth-google"),
    path("auth/oauth/apple", views.AppleOAuthApi.as_view(), name="auth-oauth-apple"),
    path("auth/2fa/enable", views.TwoFactorEnableApi.as_view(), name="auth-2fa-enable"),
    path("auth/2fa/verify", views.TwoFactorVerifyApi.as_view(), name="auth-2fa-verify"),
    path("auth/2fa/disable", views.TwoFactorDisableApi.as_view(), name="auth-2fa-disable"),
    path("auth/logout", views.LogoutApi.as_view(), name="auth-logout"),
    path("auth/sessions", views.SessionListApi.as_view(), name="auth-sessions"),
    path("auth/sessions/<str:session_id>", views.SessionDetailApi.as_view(), name="auth-session-detail"),
    path("auth/password/change", views.PasswordChangeApi.as_view(), name="auth-password-change"),
    path("auth/password/reset", views.PasswordResetApi.as_view(), name="auth-password-reset"),
    path(
        "auth/password/reset/confirm",
        views.PasswordResetConfirmApi.as_view(),
        name="auth-password-reset-confirm",
    ),
    path("users/me", views.MeApi.as_view(), name="users-me"),
]
