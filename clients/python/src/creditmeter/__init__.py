"""Python client of the creditmeter billing service.

    from creditmeter import Client
    with Client("http://127.0.0.1:8000", api_key) as client:
        client.record_usage(account_id="acme", model="gpt-4o", input_tokens=2006, output_tokens=300)

`AsyncClient` has the same operations, awaited. Money is `Decimal` throughout."""

from creditmeter._batching import BatcherReport, Rejected
from creditmeter._core import Retry
from creditmeter.aio import AsyncBatcher, AsyncClient, AsyncHold
from creditmeter.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    CreditmeterError,
    InsufficientCreditsError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)
from creditmeter.models import UsageEventIn, new_event_id
from creditmeter.providers import read_response
from creditmeter.sync import Batcher, Client, Hold

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncBatcher",
    "AsyncClient",
    "AsyncHold",
    "AuthenticationError",
    "BadRequestError",
    "Batcher",
    "BatcherReport",
    "Client",
    "ConflictError",
    "CreditmeterError",
    "Hold",
    "InsufficientCreditsError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "Rejected",
    "Retry",
    "UnprocessableEntityError",
    "UsageEventIn",
    "new_event_id",
    "read_response",
]
