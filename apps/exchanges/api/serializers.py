from __future__ import annotations

from rest_framework import serializers

from apps.exchanges.models import ExchangeLink


class CredentialFieldSerializer(serializers.Serializer):
    # Declared in get_fields: `label` would shadow Field.label as a class attribute.
    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "name": serializers.CharField(),
            "label": serializers.CharField(),
            "secret": serializers.BooleanField(),
            "help": serializers.CharField(),
        }


class LinkInitiateOutputSerializer(serializers.Serializer):
    venue = serializers.CharField()
    state = serializers.CharField()
    expires_at = serializers.DateTimeField()
    credentials = CredentialFieldSerializer(many=True)
    instructions = serializers.CharField()
    callback = serializers.CharField()


class LinkCallbackInputSerializer(serializers.Serializer):
    """The credential fields are named per venue (see initiate's `credentials`); Crypto.com:
    `api_key` + `api_secret`, Kalshi: `api_key_id` + `private_key` (PEM)."""

    state = serializers.CharField(max_length=128)
    # An API key goes into a request header: printable ASCII, no spaces (a non-ASCII key failed
    # in the HTTP client as a 500, a CR/LF one as a venue that could not be reached).
    key = serializers.RegexField(
        r"^[\x21-\x7e]+\Z",
        max_length=256,
        trim_whitespace=True,
        error_messages={"invalid": "An API key is printable ASCII without spaces."},
    )
    secret = serializers.CharField(max_length=8192, trim_whitespace=False)


class ExchangeLinkSerializer(serializers.ModelSerializer):
    venue_account_id = serializers.CharField(source="exchange_user_id")

    class Meta:
        model = ExchangeLink
        fields = (
            "id", "exchange", "status", "venue_account_id", "key_hint", "linked_at",
            "last_checked_at", "last_error_code", "revoked_at",
        )  # fmt: skip
        read_only_fields = fields
