"""What the client raises. An answer with an error status becomes an `APIError` subclass chosen by the
status, carrying the service's error object (`type`, `code`, `message`, `param`) and the status."""

import httpx

from creditmeter.models import ErrorObject


class CreditmeterError(Exception):
    """Every error this client raises."""


class APIConnectionError(CreditmeterError):
    """The service could not be reached (or the connection broke) and the retries ran out."""


class APIError(CreditmeterError):
    status: int
    type: str
    code: str
    message: str
    param: str | None

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        type: str = "api_error",
        param: str | None = None,
        request_id: str | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.type = type
        self.param = param
        self.request_id = request_id
        self.response = response

    @property
    def error(self) -> ErrorObject:
        """The service's error object, as it sent it."""
        return ErrorObject(message=self.message, type=self.type, code=self.code, param=self.param)


class BadRequestError(APIError):
    """400: the request is malformed (`validation_error`); `param` names the field."""


class AuthenticationError(APIError):
    """401: the key is missing, unknown, revoked or expired."""


class InsufficientCreditsError(APIError):
    """402: a hold does not fit the account's available credits (`insufficient_credits`) or a spend limit
    (`spend_limit_exceeded`)."""


class PermissionDeniedError(APIError):
    """403: the key lacks the scope, or is bound to another account."""


class NotFoundError(APIError):
    """404: the account, model, hold or key does not exist (`account_not_found`, `model_not_found`, ...)."""


class ConflictError(APIError):
    """409: the resource exists already, or is in a state that forbids this."""


class UnprocessableEntityError(APIError):
    """422: well-formed but refused (`idempotency_key_reused`, `model_unpriced`, ...)."""


class RateLimitError(APIError):
    """429, after the retries ran out."""


class InternalServerError(APIError):
    """5xx, after the retries ran out."""


BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_class(status: int) -> type[APIError]:
    if status >= 500:
        return InternalServerError
    return BY_STATUS.get(status, APIError)
