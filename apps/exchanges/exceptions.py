from rest_framework import status

from k2.api.exceptions import ApplicationError


class LinkStateInvalid(ApplicationError):
    code = "LINK_STATE_INVALID"
    default_message = "The link state is unknown, expired, already used or for another venue."


class ExchangeAuthFailed(ApplicationError):
    code = "EXCHANGE_AUTH_FAILED"
    default_message = "The venue refused these credentials."


class ExchangeUnavailable(ApplicationError):
    code = "EXCHANGE_UNAVAILABLE"
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_message = "The venue could not be reached. Nothing was stored; try again."


class ExchangeRequestFailed(ApplicationError):
    code = "EXCHANGE_ERROR"
    status_code = status.HTTP_502_BAD_GATEWAY
    default_message = "The venue answered with an error."


class ExchangeAccountChanged(ApplicationError):
    code = "EXCHANGE_ACCOUNT_CHANGED"
    status_code = status.HTTP_409_CONFLICT
    default_message = (
        "These credentials cannot see your open orders on this venue: they are for another account. "
        "Cancel those orders first, or link the account that holds them. Nothing was stored."
    )
