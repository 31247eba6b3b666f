"""A provider's response, read for what a usage event needs: the model string it carried and its usage
object, sent as-is. The service maps each provider's usage to its token accounting (`usage_format`),
so the client never counts tokens itself. Responses may be SDK objects or the decoded JSON."""

import dataclasses
from typing import Any

# A response's service tier, when it is one the service prices (OpenAI also answers `auto`, `scale`).
SERVICE_TIERS = ("default", "batch", "flex", "priority")
BEDROCK = ("bedrock", "aws", "amazon-bedrock")


@dataclasses.dataclass(frozen=True, slots=True)
class Reported:
    model: str
    usage: dict[str, Any]
    usage_format: str | None
    service_tier: str | None


def read_response(response: Any, *, provider: str | None = None, model: str | None = None) -> Reported:
    """What a usage event takes from an OpenAI (chat completions or Responses), Anthropic, Gemini or Bedrock
    Converse response. `model` overrides the response's (Bedrock Converse responses carry none)."""
    metadata = field(response, "usage_metadata", "usageMetadata")
    if metadata is not None:
        return Reported(
            model=model or _model(field(response, "model_version", "modelVersion")),
            usage=plain(metadata),
            usage_format="gemini",
            service_tier=None,
        )
    usage = field(response, "usage")
    if usage is None:
        raise ValueError(
            "The response carries no usage (`usage` or `usage_metadata`); "
            "for a streamed response, pass the final chunk that holds it"
        )
    usage = plain(usage)
    if not isinstance(usage, dict):
        raise ValueError(f"The response's usage is not an object: {usage!r}")
    model = model or _model(field(response, "model"))
    if not model:
        raise ValueError("The response names no model (Bedrock Converse responses do not): pass `model=`")
    tier = field(response, "service_tier")
    return Reported(
        model=model,
        usage=usage,
        usage_format=usage_format(response, usage, provider),
        service_tier=tier if tier in SERVICE_TIERS else None,
    )


def usage_format(response: Any, usage: dict[str, Any], provider: str | None) -> str | None:
    """The format, where the response tells it; None lets the service tell it from the usage's keys.
    Anthropic's and the Responses API's usage share their key names: the response's kind decides."""
    if "inputTokens" in usage or ((provider or "").lower() in BEDROCK and "input_tokens" not in usage):
        return "bedrock"
    if "prompt_tokens" in usage:
        return "openai"
    if field(response, "object") == "response":
        return "openai-responses"
    if field(response, "type") == "message":
        return "anthropic"
    return None


def field(obj: Any, *names: str) -> Any:
    """The first of `names` the object has, as a key or an attribute."""
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def plain(value: Any) -> Any:
    """JSON-able data from an SDK object (pydantic, dataclass, plain object) or decoded JSON; absent
    (None) fields are left out, as the provider's JSON leaves them out."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "model_dump"):  # pydantic: the openai, anthropic and google-genai SDKs
        return plain(value.model_dump(mode="json", exclude_none=True))
    if hasattr(value, "to_dict"):
        return plain(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if hasattr(value, "__dict__"):
        return plain({key: item for key, item in vars(value).items() if not key.startswith("_")})
    return value


def _model(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
