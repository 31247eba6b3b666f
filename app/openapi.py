"""The OpenAPI document: what Litestar generates from the handlers, completed with what it cannot see.

Litestar documents each handler's success answer and, for a handler with parameters, a 400 with its own
default body ({status_code, detail, extra}). The service answers every error with the envelope of
`app.errors.error_body`, and several statuses come from layers Litestar does not tie to a handler: the
API-key middleware and scope guard, the per-key rate limit, the body size limit, the database, idempotency.
`document` completes the generated document once, when the app is created:

- every error status of every operation is one shared response (`components/responses`) whose body is the
  `Error` schema;
- the statuses that follow from an operation's shape are added (`derived_errors`); those only a handler
  knows (402, a 404 for a body field, 409, a 422) it declares itself, with `responses=errors(...)`;
- a write that answers 201 documents the 200 with which its retries are replayed;
- the lists that export CSV document `text/csv` beside JSON;
- request bodies that reject unknown fields say `additionalProperties: false`.
"""

from dataclasses import dataclass
from importlib import resources
from importlib.metadata import version

import msgspec
from litestar import Litestar, Router
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
)
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router

from app.errors import TYPES
from app.exports import Format

IDEMPOTENCY_HEADER = "Idempotency-Key"

# The API reference page (`/schema`) is Swagger UI from the installed `swagger-ui-py` package, served by the app
# itself: the page must work where no CDN answers (an air-gapped deployment, a laptop on a plane). The package
# version is in the path, so an upgrade never meets a browser's cached copy of the old files.
UI_ASSETS = f"/schema/ui/{version('swagger-ui-py')}"


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    name: str  # its key in components/responses
    description: str
    retry_after: bool = False


# One entry per error status the service answers on purpose (500 is never promised).
ERRORS = {
    400: ErrorResponse(
        "BadRequest", "Invalid request: a parameter, header or body field is missing, malformed or out of range"
    ),
    401: ErrorResponse("Unauthenticated", "Missing, invalid, expired or revoked API key (`invalid_api_key`)"),
    402: ErrorResponse(
        "InsufficientCredits", "The account's available credits do not cover it (`insufficient_credits`)"
    ),
    403: ErrorResponse("Forbidden", "The API key lacks the scope (`insufficient_scope`)"),
    404: ErrorResponse(
        "NotFound",
        "What the request names does not exist, or belongs to another account than the key's "
        "(`account_not_found`, `model_not_found`, `provider_not_configured`, ...)",
    ),
    409: ErrorResponse("Conflict", "It conflicts with what is stored (`account_exists`, `authorization_settled`, ...)"),
    413: ErrorResponse("RequestTooLarge", "The request body is larger than the service accepts"),
    422: ErrorResponse(
        "Unprocessable",
        "An idempotency key (or `event_id`) reused with a different payload (`idempotency_key_reused`, naming "
        "the fields that differ), or a model without a known price (`model_unpriced`)",
    ),
    429: ErrorResponse("RateLimited", "Too many requests with this API key", retry_after=True),
    503: ErrorResponse("ServiceUnavailable", "The database is unavailable; retry shortly", retry_after=True),
}

STRING = Schema(type=OpenAPIType.STRING)
# The body of every error answer: `app.errors.error_body`, which builds it, is the source of truth.
ERROR_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    title="Error",
    required=["error"],
    properties={
        "error": Schema(
            type=OpenAPIType.OBJECT,
            required=["message", "type", "code"],
            properties={
                "message": Schema(type=OpenAPIType.STRING, description="For people"),
                "type": Schema(
                    type=OpenAPIType.STRING,
                    enum=sorted({*TYPES.values(), "api_error"}),  # error_body's fallback
                    description="The error's family, as in OpenAI's error object",
                ),
                "code": Schema(
                    type=OpenAPIType.STRING,
                    description="For programs: `validation_error`, `account_not_found`, `insufficient_credits`, ...",
                ),
                "param": Schema(type=OpenAPIType.STRING, description="The parameter or field at fault, if one is"),
            },
            additional_properties=False,
        )
    },
    additional_properties=False,
)
RETRY_AFTER = OpenAPIHeader(schema=Schema(type=OpenAPIType.INTEGER), description="Seconds to wait before a retry")
REPLAYED = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING, enum=["true"]), required=True, description="This answer is a replay"
)


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """For a handler's `responses`: the error statuses it answers beyond those `derived_errors` finds.
    `document` turns each into the shared response with the error body."""
    return {status: ResponseSpec(data_container=None, description=ERRORS[status].description) for status in statuses}


def document(app: Litestar) -> None:
    """Complete the app's OpenAPI document. Litestar builds it once and serves that object from then on
    (JSON, the Swagger UI page, `app.openapi_schema`), so it is built and completed here, at creation."""
    openapi = app.openapi_schema
    components = openapi.components
    components.schemas["Error"] = ERROR_SCHEMA
    components.responses = {error.name: shared_response(error) for error in ERRORS.values()}
    closed: set[type] = set()
    for route in app.routes:
        item = openapi.paths.get(route.path_format or "/") if isinstance(route, HTTPRoute) else None
        if item is None:
            continue
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            parameters = handler.parsed_fn_signature.parameters
            body = parameters["data"].annotation if "data" in parameters else None
            exports_csv = any(field.raw is Format for field in parameters.values())
            for method in handler.http_methods:
                complete(getattr(item, method.lower()), body, exports_csv)
            if body is not None:
                closed |= closed_structs(msgspec.inspect.type_info(body))
    # Components are named after their struct (qualified only when two share a name); the title is the name.
    closed_shapes = {(cls.__name__, frozenset(cls.__struct_encode_fields__)) for cls in closed}
    for schema in components.schemas.values():
        if (schema.title, frozenset(schema.properties or ())) in closed_shapes:
            schema.additional_properties = False


def shared_response(error: ErrorResponse) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=error.description,
        headers={"Retry-After": RETRY_AFTER} if error.retry_after else None,
        content={"application/json": OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Error"))},
    )


def complete(operation: Operation, body: type | None, exports_csv: bool) -> None:
    responses = operation.responses or {}
    statuses = {int(status) for status in responses if int(status) >= 400} | derived_errors(operation)
    for status in statuses:
        responses[str(status)] = Reference(ref=f"#/components/responses/{ERRORS[status].name}")
    # A retry of a create with the same Idempotency-Key, or the same `event_id` (which keys a usage event and
    # the reversal of one), gets the first answer again, as a 200.
    key = f"`{IDEMPOTENCY_HEADER}`" if idempotent(operation) else None
    if key is None and "event_id" in getattr(body, "__struct_fields__", ()):
        key = "`event_id`"
    if "201" in responses and key is not None:
        responses["200"] = OpenAPIResponse(
            description=f"A retry with the same {key}: the first answer, replayed",
            headers={"Idempotent-Replayed": REPLAYED},
            content=dict(responses["201"].content or {}),
        )
    if exports_csv:  # `format=csv` or `Accept: text/csv`: the whole list as one file
        responses["200"].content["text/csv"] = OpenAPIMediaType(schema=STRING)
    operation.responses = dict(sorted(responses.items()))


def derived_errors(operation: Operation) -> set[int]:
    """The error statuses that follow from an operation's shape."""
    statuses = set()
    if operation.security:
        # The API-key middleware: a missing or bad key is a 401, and checking a key can need the database (a
        # 503 when it does not answer); then come the per-key rate limit (429, when configured) and the scope
        # guard (403).
        statuses |= {401, 403, 429, 503}
    if operation.request_body is not None:
        statuses.add(413)
    if any(getattr(parameter, "param_in", None) == "path" for parameter in operation.parameters or ()):
        statuses.add(404)  # every path id names something that is looked up
    if idempotent(operation):
        statuses.add(422)  # the key reused with a different payload
    return statuses


def idempotent(operation: Operation) -> bool:
    return any(
        getattr(parameter, "param_in", None) == "header" and parameter.name == IDEMPOTENCY_HEADER
        for parameter in operation.parameters or ()
    )


def closed_structs(info: msgspec.inspect.Type, seen: set[int] | None = None) -> set[type]:
    """The structs in a request body's type, nested ones included, that reject unknown fields."""
    seen = set() if seen is None else seen
    if id(info) in seen:
        return set()
    seen.add(id(info))
    found = {info.cls} if isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields else set()
    # Type descriptions are structs themselves: walk whatever types they hold (fields, items, union members).
    for value in msgspec.structs.astuple(info):
        for item in value if isinstance(value, tuple) else (value,):
            item = item.type if isinstance(item, msgspec.inspect.Field) else item
            if isinstance(item, msgspec.inspect.Type):
                found |= closed_structs(item, seen)
    return found


def reference_ui() -> tuple[SwaggerRenderPlugin, Router]:
    """The `/schema` page and the router that serves its scripts, styles and icon from the installed package.
    The page names no other host: the spec is inlined, and Swagger UI's online validator badge belongs to the
    standalone layout, which is not used."""
    page = SwaggerRenderPlugin(
        path=["/", "/swagger"],
        js_url=f"{UI_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{UI_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{UI_ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{UI_ASSETS}/favicon-32x32.png'>",
    )
    assets = create_static_files_router(
        UI_ASSETS,
        directories=[resources.files("swagger_ui") / "static"],
        name="reference_ui_assets",
        include_in_schema=False,
    )
    return page, assets
