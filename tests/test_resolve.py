"""Model resolution (app/catalog/resolve.py) over the bundled catalog: real model strings as
providers report them, the ambiguities a provider hint settles, determinism and the cache.
Pure: the resolver is built straight from default_catalog.json, no database."""

import random
import timeit

import pytest

from app.catalog.importer import ORIGIN_PROVIDERS, read_catalog
from app.catalog.resolve import (
    FIRST_PARTY,
    AliasEntry,
    Entry,
    Resolution,
    Resolver,
    catalog_entries,
    compile_match,
)

CATALOG = read_catalog()
ENTRIES, ALIASES, PROVIDERS = catalog_entries(CATALOG)


@pytest.fixture(scope="module")
def resolver() -> Resolver:
    return Resolver(ENTRIES, ALIASES, PROVIDERS)


def model_id(resolver: Resolver, model: str, provider: str | None = None) -> str | None:
    found = resolver.resolve(model, provider)
    return found.model_id if found else None


# (model string as a provider reports it, provider hint or None, the catalog model it means).
# The expected ids say what the string means: which provider served the call (the hint, else the
# string's own syntax, else the model's maker) and which of that provider's models is priced for
# it (the snapshot's own model where the catalog prices it apart, else the model it is a snapshot of).
REAL = [
    # Anthropic's API: dated snapshots and -latest pointers are Anthropic's models.
    ("claude-3-5-sonnet-20241022", None, "anthropic/claude-3-5-sonnet"),
    ("claude-3-5-sonnet-20240620", None, "anthropic/claude-3-5-sonnet"),
    ("claude-3-5-sonnet-latest", None, "anthropic/claude-3-5-sonnet"),
    ("claude-3.5-sonnet", None, "anthropic/claude-3-5-sonnet"),
    ("claude-3-5-haiku-20241022", None, "anthropic/claude-3-5-haiku-latest"),
    ("claude-3-5-haiku-latest", None, "anthropic/claude-3-5-haiku-latest"),
    ("claude-3-7-sonnet-20250219", None, "anthropic/claude-3-7-sonnet-latest"),
    ("claude-3-7-sonnet-latest", None, "anthropic/claude-3-7-sonnet-latest"),
    ("claude-3.7-sonnet", None, "anthropic/claude-3-7-sonnet-latest"),
    ("claude-3-opus-20240229", None, "anthropic/claude-3-opus-latest"),
    ("claude-3-opus-latest", None, "anthropic/claude-3-opus-latest"),
    ("claude-3-sonnet-20240229", None, "anthropic/claude-3-sonnet"),
    ("claude-3-haiku-20240307", None, "anthropic/claude-3-haiku"),
    ("claude-2.1", None, "anthropic/claude-2"),
    ("claude-2.0", None, "anthropic/claude-2"),
    ("claude-sonnet-4-20250514", None, "anthropic/claude-sonnet-4-0"),
    ("claude-sonnet-4-0", None, "anthropic/claude-sonnet-4-0"),
    ("claude-sonnet-4", None, "anthropic/claude-sonnet-4-0"),
    ("claude-4-sonnet-20250514", None, "anthropic/claude-sonnet-4-0"),
    ("claude-opus-4-20250514", None, "anthropic/claude-opus-4-0"),
    ("claude-opus-4-0", None, "anthropic/claude-opus-4-0"),
    ("claude-4-opus-20250514", None, "anthropic/claude-opus-4-0"),
    ("claude-opus-4-1-20250805", None, "anthropic/claude-opus-4-1"),
    ("claude-opus-4-1", None, "anthropic/claude-opus-4-1"),
    ("claude-sonnet-4-5-20250929", None, "anthropic/claude-sonnet-4-5"),
    ("claude-sonnet-4-5", None, "anthropic/claude-sonnet-4-5"),
    ("claude-haiku-4-5-20251001", None, "anthropic/claude-haiku-4-5"),
    ("claude-haiku-4-5", None, "anthropic/claude-haiku-4-5"),
    ("claude-opus-4-5-20251101", None, "anthropic/claude-opus-4-5"),
    ("claude-opus-4-6", None, "anthropic/claude-opus-4-6"),
    ("claude-sonnet-4-6", None, "anthropic/claude-sonnet-4-6"),
    ("claude-3-5-sonnet-20241022", "anthropic", "anthropic/claude-3-5-sonnet"),
    ("claude-3-haiku-20240307", "anthropic", "anthropic/claude-3-haiku"),
    # OpenAI's API.
    ("gpt-4o", None, "openai/gpt-4o"),
    ("gpt-4o-2024-08-06", None, "openai/gpt-4o"),
    ("gpt-4o-2024-11-20", None, "openai/gpt-4o"),
    ("gpt-4o-2024-05-13", None, "openai/gpt-4o-2024-05-13"),  # priced apart: its own model
    ("gpt-4o-mini", None, "openai/gpt-4o-mini"),
    ("gpt-4o-mini-2024-07-18", None, "openai/gpt-4o-mini"),
    ("gpt-4o:extended", None, "openai/gpt-4o:extended"),  # priced apart
    ("chatgpt-4o-latest", None, "openai/chatgpt-4o-latest"),
    ("gpt-4o-audio-preview-2024-12-17", None, "openai/gpt-4o-audio-preview"),
    ("gpt-4o-search-preview-2025-03-11", None, "openai/gpt-4o-search-preview"),
    ("gpt-4o-mini-search-preview-2025-03-11", None, "openai/gpt-4o-mini-search-preview"),
    ("gpt-4-turbo", None, "openai/gpt-4-turbo"),
    ("gpt-4-turbo-preview", None, "openai/gpt-4-turbo"),
    ("gpt-4-turbo-2024-04-09", None, "openai/gpt-4-turbo"),
    ("gpt-4-0125-preview", None, "openai/gpt-4-turbo"),
    ("gpt-4-1106-preview", None, "openai/gpt-4-1106-preview"),
    ("gpt-4", None, "openai/gpt-4"),
    ("gpt-4-0613", None, "openai/gpt-4"),
    ("gpt-4-0314", None, "openai/gpt-4"),
    ("gpt-4-32k-0613", None, "openai/gpt-4-32k"),
    ("gpt-3.5-turbo", None, "openai/gpt-3.5-turbo"),
    ("gpt-3.5-turbo-0125", None, "openai/gpt-3.5-turbo"),
    ("gpt-3.5-turbo-1106", None, "openai/gpt-3.5-turbo-1106"),  # priced apart
    ("gpt-3.5-turbo-0613", None, "openai/gpt-3.5-turbo-0613"),  # priced apart
    ("gpt-3.5-turbo-16k-0613", None, "openai/gpt-3.5-turbo-16k"),
    ("gpt-3.5-turbo-instruct-0914", None, "openai/gpt-3.5-turbo-instruct"),
    ("gpt-35-turbo", None, "openai/gpt-3.5-turbo"),  # Azure's spelling, but no hint: the maker's model
    ("gpt-4.1-2025-04-14", None, "openai/gpt-4.1"),
    ("gpt-4.1-mini-2025-04-14", None, "openai/gpt-4.1-mini"),
    ("gpt-4.1-nano-2025-04-14", None, "openai/gpt-4.1-nano"),
    ("gpt-4.5-preview-2025-02-27", None, "openai/gpt-4.5-preview"),
    ("gpt-5", None, "openai/gpt-5"),
    ("gpt-5-2025-08-07", None, "openai/gpt-5"),
    ("gpt-5-mini-2025-08-07", None, "openai/gpt-5-mini"),
    ("gpt-5-nano-2025-08-07", None, "openai/gpt-5-nano"),
    ("gpt-5-chat-latest", None, "openai/gpt-5-chat"),
    ("gpt-5-pro-2025-10-06", None, "openai/gpt-5-pro"),
    ("gpt-5.1-2025-11-13", None, "openai/gpt-5.1"),
    ("gpt-5.2-2025-12-11", None, "openai/gpt-5.2"),
    ("o1", None, "openai/o1"),
    ("o1-2024-12-17", None, "openai/o1"),
    ("o1-mini-2024-09-12", None, "openai/o1-mini"),
    ("o1-preview-2024-09-12", None, "openai/o1-preview"),
    ("o1-pro-2025-03-19", None, "openai/o1-pro"),
    ("o3-2025-04-16", None, "openai/o3"),
    ("o3-mini-2025-01-31", None, "openai/o3-mini"),
    ("o3-mini-high", None, "openai/o3-mini"),
    ("o3-pro-2025-06-10", None, "openai/o3-pro"),
    ("o4-mini-2025-04-16", None, "openai/o4-mini"),
    ("o3-deep-research-2025-06-26", None, "openai/o3-deep-research"),
    ("codex-mini-latest", None, "openai/codex-mini"),
    ("computer-use-preview-2025-03-11", None, "openai/computer-use-preview"),
    ("davinci-002", None, "openai/davinci-002"),
    ("babbage-002", None, "openai/babbage-002"),
    ("text-davinci-003", None, "openai/text-davinci-003"),
    ("text-embedding-3-small", None, "openai/text-embedding-3-small"),
    ("text-embedding-3-large", None, "openai/text-embedding-3-large"),
    ("text-embedding-ada-002", None, "openai/text-embedding-ada-002"),
    ("text-embedding-ada-002-v2", None, "openai/text-embedding-ada-002-v2"),
    ("gpt-oss-120b", None, "openai/gpt-oss-120b"),
    ("gpt-4o-2024-08-06", "openai", "openai/gpt-4o"),
    ("o3-mini-2025-01-31", "OpenAI", "openai/o3-mini"),
    # OpenAI fine-tunes: the fine-tune price where the catalog has one, else the base model's.
    ("ft:gpt-4o-2024-08-06:my-org::A1b2C3d4", None, "openai/ft:gpt-4o-2024-08-06"),
    ("ft:gpt-4o-2024-08-06:my-org:support-bot:A1b2C3d4", None, "openai/ft:gpt-4o-2024-08-06"),
    ("ft:gpt-4o-mini-2024-07-18:acme:triage:9XyZ0aB1", None, "openai/ft:gpt-4o-mini-2024-07-18"),
    ("ft:gpt-3.5-turbo-0125:acme::8abcDEF1", None, "openai/ft:gpt-3.5-turbo"),
    ("ft:gpt-3.5-turbo-1106:acme:chat:8abcDEF1", None, "openai/ft:gpt-3.5-turbo"),
    ("ft:gpt-4.1-2025-04-14:acme::BxYz1234", None, "openai/ft:gpt-4.1-2025-04-14"),
    ("ft:gpt-4.1-mini-2025-04-14:acme:x:BxYz1234", None, "openai/ft:gpt-4.1-mini-2025-04-14"),
    ("ft:gpt-4.1-nano-2025-04-14:acme::BxYz1234", None, "openai/ft:gpt-4.1-nano-2025-04-14"),
    ("ft:o4-mini-2025-04-16:acme::BxYz1234", None, "openai/ft:o4-mini-2025-04-16"),
    ("ft:gpt-4-0613:acme::7abc1234", None, "openai/ft:gpt-4-0613"),
    ("ft:davinci-002:acme::7abc1234", None, "openai/ft:davinci-002"),
    ("ft:babbage-002:acme::7abc1234", None, "openai/ft:babbage-002"),
    ("ft:gpt-5-mini-2025-08-07:acme::7abc1234", None, "openai/gpt-5-mini"),  # no fine-tune price: the base's
    ("ft:gpt-4o-2024-08-06:acme::A1b2C3d4", "openai", "openai/ft:gpt-4o-2024-08-06"),
    # Google's Gemini API, with and without its `models/` prefix.
    ("gemini-1.5-pro", None, "google/gemini-1.5-pro"),
    ("gemini-1.5-pro-001", None, "google/gemini-1.5-pro"),
    ("gemini-1.5-pro-002", None, "google/gemini-1.5-pro"),
    ("gemini-1.5-pro-latest", None, "google/gemini-1.5-pro"),
    ("models/gemini-1.5-pro-002", None, "google/gemini-1.5-pro"),
    ("gemini-1.5-flash", None, "google/gemini-1.5-flash"),
    ("gemini-1.5-flash-001", None, "google/gemini-1.5-flash"),
    ("gemini-1.5-flash-002", None, "google/gemini-1.5-flash"),
    ("gemini-1.5-flash-latest", None, "google/gemini-1.5-flash"),
    ("models/gemini-1.5-flash", None, "google/gemini-1.5-flash"),
    ("gemini-2.0-flash", None, "google/gemini-2.0-flash"),
    ("gemini-2.0-flash-001", None, "google/gemini-2.0-flash"),
    ("models/gemini-2.0-flash-001", None, "google/gemini-2.0-flash"),
    ("gemini-2.0-flash-exp", None, "google/gemini-2.0-flash"),
    ("gemini-2.0-flash-thinking-exp-01-21", None, "google/gemini-2.0-flash"),
    ("gemini-2.0-flash-lite", None, "google/gemini-2.0-flash-lite"),
    ("gemini-2.0-flash-lite-001", None, "google/gemini-2.0-flash-lite"),
    ("gemini-2.0-flash-lite-preview-02-05", None, "google/gemini-2.0-flash-lite"),
    ("gemini-2.5-pro", None, "google/gemini-2.5-pro"),
    ("gemini-2.5-pro-preview-05-06", None, "google/gemini-2.5-pro"),
    ("gemini-2.5-pro-preview-06-05", None, "google/gemini-2.5-pro"),
    ("models/gemini-2.5-pro", None, "google/gemini-2.5-pro"),
    ("gemini-2.5-flash", None, "google/gemini-2.5-flash"),
    ("gemini-2.5-flash-preview-09-2025", None, "google/gemini-2.5-flash"),
    ("gemini-2.5-flash-preview-05-20", None, "google/gemini-2.5-flash-preview"),
    ("gemini-2.5-flash-preview-04-17", None, "google/gemini-2.5-flash-preview"),
    ("gemini-2.5-flash-lite", None, "google/gemini-2.5-flash-lite"),
    ("gemini-2.5-flash-lite-preview-06-17", None, "google/gemini-2.5-flash-lite"),
    ("gemini-3-pro-preview", None, "google/gemini-3-pro-preview"),
    ("gemini-embedding-001", None, "google/gemini-embedding-001"),
    ("gemini-exp-1206", None, "google/gemini-exp-1206"),
    ("gemini-pro", None, "google/gemini-pro"),
    ("gemini-1.0-pro", None, "google/gemini-pro"),
    ("gemma-3-27b-it", None, "google/gemma-3-27b-it"),
    ("gemini-2.5-pro", "gemini", "google/gemini-2.5-pro"),
    ("gemini-2.0-flash-001", "google-ai-studio", "google/gemini-2.0-flash"),
    ("models/gemini-1.5-flash-002", "google", "google/gemini-1.5-flash"),
    # Vertex AI: `@version` names, publisher paths and resource names are Vertex's.
    ("claude-3-5-sonnet-v2@20241022", "vertex", "vertex/claude-3-5-sonnet"),
    ("claude-3-5-sonnet-v2@20241022", None, "vertex/claude-3-5-sonnet"),
    ("claude-3-5-sonnet@20240620", None, "vertex/claude-3-5-sonnet"),
    ("claude-3-opus@20240229", None, "vertex/claude-3-opus"),
    ("claude-3-haiku@20240307", "vertex_ai", "vertex/claude-3-haiku"),
    ("claude-3-sonnet@20240229", "vertexai", "vertex/claude-3-sonnet"),
    ("claude-3-5-haiku@20241022", "google-vertex", "vertex/claude-3-5-haiku"),
    ("claude-sonnet-4-5@20250929", None, "vertex/claude-sonnet-4-5"),
    ("claude-opus-4-5@20251101", None, "vertex/claude-opus-4-5"),
    ("claude-haiku-4-5@20251001", "vertex", "vertex/claude-haiku-4-5"),
    ("claude-opus-4-6@default", None, "vertex/claude-opus-4-6"),
    ("claude-sonnet-4-6@default", "vertex", "vertex/claude-sonnet-4-6"),
    ("publishers/anthropic/models/claude-3-5-sonnet-v2@20241022", None, "vertex/claude-3-5-sonnet"),
    (
        "projects/my-project/locations/us-east5/publishers/anthropic/models/claude-3-5-sonnet-v2@20241022",
        None,
        "vertex/claude-3-5-sonnet",
    ),
    (
        "projects/my-project/locations/europe-west1/publishers/anthropic/models/claude-3-opus@20240229",
        "vertex",
        "vertex/claude-3-opus",
    ),
    ("publishers/google/models/gemini-2.0-flash-001", None, "vertex/gemini-2.0-flash"),
    ("projects/p1/locations/us-central1/publishers/google/models/gemini-2.5-pro", None, "vertex/gemini-2.5-pro"),
    ("gemini-2.0-flash-001", "vertex", "vertex/gemini-2.0-flash"),
    ("gemini-2.0-flash-lite-001", "vertex_ai", "vertex/gemini-2.0-flash-lite"),
    ("gemini-2.5-flash", "vertex_ai", "vertex/gemini-2.5-flash"),
    ("gemini-2.5-pro", "vertex", "vertex/gemini-2.5-pro"),
    ("gemini-2.5-flash-lite", "vertex", "vertex/gemini-2.5-flash-lite"),
    ("mistral-large@2407", None, "vertex/mistral-large@2407"),
    ("mistral-large@2411-001", None, "vertex/mistral-large@2411-001"),
    ("codestral@2405", None, "vertex/codestral@2405"),
    ("jamba-1.5-large@001", None, "vertex/jamba-1.5-large"),
    ("jamba-1.5-mini@001", "vertex", "vertex/jamba-1.5-mini"),
    ("text-embedding-005", "vertex", "vertex/text-embedding-005"),
    ("text-multilingual-embedding-002", "vertex", "vertex/text-multilingual-embedding-002"),
    ("meta/llama-3.3-70b-instruct-maas", "vertex", "vertex/meta/llama-3.3-70b-instruct-maas"),
    ("gemini-1.5-pro@002", None, "google/gemini-1.5-pro"),  # Vertex has no 1.5 here: the maker's copy
    # Bedrock: model ids, cross-region profiles, ARNs; the syntax says Bedrock served the call.
    ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", None, "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0"),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", None, "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0"),
    ("eu.anthropic.claude-3-5-sonnet-20240620-v1:0", None, "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", None, "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"),
    ("anthropic.claude-3-haiku-20240307-v1:0", None, "bedrock/regional.anthropic.claude-3-haiku-20240307-v1:0"),
    ("us.anthropic.claude-3-haiku-20240307-v1:0", None, "bedrock/regional.anthropic.claude-3-haiku-20240307-v1:0"),
    ("anthropic.claude-3-sonnet-20240229-v1:0", None, "bedrock/regional.anthropic.claude-3-sonnet-20240229-v1:0"),
    ("anthropic.claude-3-opus-20240229-v1:0", None, "bedrock/anthropic.claude-3-opus-20240229-v1:0"),
    ("us.anthropic.claude-3-opus-20240229-v1:0", None, "bedrock/anthropic.claude-3-opus-20240229-v1:0"),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", None, "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("us.anthropic.claude-3-5-haiku-20241022-v1:0", None, "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", None, "bedrock/anthropic.claude-3-7-sonnet-20250219-v1:0"),
    ("eu.anthropic.claude-3-7-sonnet-20250219-v1:0", None, "bedrock/anthropic.claude-3-7-sonnet-20250219-v1:0"),
    ("anthropic.claude-sonnet-4-20250514-v1:0", None, "bedrock/anthropic.claude-sonnet-4-20250514-v1:0"),
    ("us.anthropic.claude-sonnet-4-20250514-v1:0", None, "bedrock/anthropic.claude-sonnet-4-20250514-v1:0"),
    (
        "global.anthropic.claude-sonnet-4-20250514-v1:0",
        None,
        "bedrock/global.anthropic.claude-sonnet-4-20250514-v1:0",
    ),
    ("anthropic.claude-opus-4-20250514-v1:0", None, "bedrock/anthropic.claude-opus-4-20250514-v1:0"),
    ("us.anthropic.claude-opus-4-1-20250805-v1:0", None, "bedrock/anthropic.claude-opus-4-1-20250805-v1:0"),
    # In-region profiles cost more than the global one for newer models: each is its own model.
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", None, "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"),
    (
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        None,
        "bedrock/global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    ),
    ("anthropic.claude-haiku-4-5-20251001-v1:0", None, "bedrock/anthropic.claude-haiku-4-5-20251001-v1:0"),
    (
        "global.anthropic.claude-haiku-4-5-20251001-v1:0",
        None,
        "bedrock/global.anthropic.claude-haiku-4-5-20251001-v1:0",
    ),
    ("us.anthropic.claude-opus-4-5-20251101-v1:0", None, "bedrock/anthropic.claude-opus-4-5-20251101-v1:0"),
    ("global.anthropic.claude-opus-4-5-20251101-v1:0", None, "bedrock/global.anthropic.claude-opus-4-5-v1:0"),
    ("anthropic.claude-v2:1", None, "bedrock/anthropic.claude-v2:1"),
    ("anthropic.claude-instant-v1", None, "bedrock/anthropic.claude-instant-v1"),
    ("amazon.nova-pro-v1:0", None, "bedrock/amazon.nova-pro-v1:0"),
    ("us.amazon.nova-pro-v1:0", None, "bedrock/amazon.nova-pro-v1:0"),
    ("amazon.nova-lite-v1:0", None, "bedrock/amazon.nova-lite-v1:0"),
    ("eu.amazon.nova-lite-v1:0", None, "bedrock/amazon.nova-lite-v1:0"),
    ("amazon.nova-micro-v1:0", None, "bedrock/amazon.nova-micro-v1:0"),
    ("us.amazon.nova-micro-v1:0", None, "bedrock/amazon.nova-micro-v1:0"),
    ("amazon.nova-premier-v1:0", None, "bedrock/amazon.nova-premier-v1:0"),
    ("amazon.titan-text-express-v1", None, "bedrock/amazon.titan-text-express-v1"),
    ("amazon.titan-text-lite-v1", None, "bedrock/amazon.titan-text-lite-v1"),
    ("amazon.titan-embed-text-v1", None, "bedrock/amazon.titan-embed-text-v1"),
    ("amazon.titan-embed-text-v2:0", None, "bedrock/amazon.titan-embed-text-v2:0"),
    ("meta.llama3-1-8b-instruct-v1:0", None, "bedrock/meta.llama3-1-8b-instruct-v1:0"),
    ("us.meta.llama3-1-70b-instruct-v1:0", None, "bedrock/meta.llama3-1-70b-instruct-v1:0"),
    ("us.meta.llama3-1-405b-instruct-v1:0", None, "bedrock/meta.llama3-1-405b-instruct-v1:0"),
    ("us.meta.llama3-2-11b-instruct-v1:0", None, "bedrock/meta.llama3-2-11b-instruct-v1:0"),
    ("meta.llama3-3-70b-instruct-v1:0", None, "bedrock/meta.llama3-3-70b-instruct-v1:0"),
    ("meta.llama3-70b-instruct-v1:0", None, "bedrock/meta.llama3-70b-instruct-v1:0"),
    ("mistral.mistral-large-2407-v1:0", None, "bedrock/mistral.mistral-large-2407-v1:0"),
    ("mistral.mixtral-8x7b-instruct-v0:1", None, "bedrock/mistral.mixtral-8x7b-instruct-v0:1"),
    ("mistral.mistral-7b-instruct-v0:2", None, "bedrock/mistral.mistral-7b-instruct-v0:2"),
    ("cohere.command-text-v14", None, "bedrock/cohere.command-text-v14"),
    ("cohere.embed-english-v3", None, "bedrock/cohere.embed-english-v3"),
    ("cohere.embed-v4:0", None, "bedrock/cohere.embed-v4:0"),
    ("deepseek.r1-v1:0", None, "bedrock/deepseek.r1-v1:0"),
    ("us.deepseek.r1-v1:0", None, "bedrock/deepseek.r1-v1:0"),
    ("ai21.jamba-1-5-large-v1:0", None, "bedrock/ai21.jamba-1-5-large-v1:0"),
    ("apac.anthropic.claude-opus-4-8", None, "bedrock/anthropic.claude-opus-4-8"),
    (
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-sonnet-20240620-v1:0",
        None,
        "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
    ),
    (
        "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        None,
        "bedrock/anthropic.claude-3-7-sonnet-20250219-v1:0",
    ),
    (
        "arn:aws:bedrock:eu-central-1:123456789012:inference-profile/eu.amazon.nova-lite-v1:0",
        "bedrock",
        "bedrock/amazon.nova-lite-v1:0",
    ),
    ("claude-3-haiku-20240307", "bedrock", "bedrock/regional.anthropic.claude-3-haiku-20240307-v1:0"),
    ("claude-3-5-sonnet-20241022", "bedrock", "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0"),
    ("anthropic.claude-3-haiku-20240307-v1:0", "aws", "bedrock/regional.anthropic.claude-3-haiku-20240307-v1:0"),
    ("us.amazon.nova-pro-v1:0", "amazon-bedrock", "bedrock/amazon.nova-pro-v1:0"),
    ("meta.llama3-1-8b-instruct-v1:0", "aws-bedrock", "bedrock/meta.llama3-1-8b-instruct-v1:0"),
    # OpenRouter: `vendor/model` names and their variants.
    ("meta-llama/llama-3.1-8b-instruct", None, "openrouter/meta-llama/llama-3.1-8b-instruct"),
    ("meta-llama/llama-3.1-8b-instruct", "openrouter", "openrouter/meta-llama/llama-3.1-8b-instruct"),
    ("meta-llama/llama-3.1-8b-instruct:free", None, "openrouter/meta-llama/llama-3.1-8b-instruct:free"),
    ("meta-llama/llama-3.1-70b-instruct", None, "openrouter/meta-llama/llama-3.1-70b-instruct"),
    ("meta-llama/llama-3.1-405b-instruct", None, "openrouter/meta-llama/llama-3.1-405b-instruct"),
    ("meta-llama/llama-3.3-70b-instruct", None, "openrouter/meta-llama/llama-3.3-70b-instruct"),
    ("meta-llama/llama-3.3-70b-instruct:free", None, "openrouter/meta-llama/llama-3.3-70b-instruct:free"),
    ("meta-llama/llama-3.2-3b-instruct", None, "openrouter/meta-llama/llama-3.2-3b-instruct"),
    ("meta-llama/llama-4-maverick", None, "openrouter/meta-llama/llama-4-maverick"),
    ("meta-llama/llama-4-scout", "openrouter", "openrouter/meta-llama/llama-4-scout"),
    ("meta-llama/llama-3.1-8b-instruct:nitro", "openrouter", "openrouter/meta-llama/llama-3.1-8b-instruct"),
    ("meta-llama/llama-3.3-70b-instruct:floor", "openrouter", "openrouter/meta-llama/llama-3.3-70b-instruct"),
    ("qwen/qwen-2.5-72b-instruct", None, "openrouter/qwen/qwen-2.5-72b-instruct"),
    ("qwen/qwen3-32b", None, "openrouter/qwen/qwen3-32b"),
    ("qwen/qwq-32b:free", None, "openrouter/qwen/qwq-32b:free"),
    ("microsoft/phi-4", None, "openrouter/microsoft/phi-4"),
    ("nvidia/llama-3.1-nemotron-70b-instruct", None, "openrouter/nvidia/llama-3.1-nemotron-70b-instruct"),
    ("perplexity/sonar-pro", None, "openrouter/perplexity/sonar-pro"),
    ("amazon/nova-pro-v1", None, "openrouter/amazon/nova-pro-v1"),
    ("moonshotai/kimi-k2", None, "openrouter/moonshotai/kimi-k2"),
    ("deepseek/deepseek-chat", "openrouter", "openrouter/deepseek/deepseek-chat"),
    ("deepseek/deepseek-chat:free", None, "openrouter/deepseek/deepseek-chat:free"),
    ("deepseek/deepseek-chat-v3-0324", "openrouter", "openrouter/deepseek/deepseek-chat-v3-0324"),
    ("deepseek/deepseek-r1", "openrouter", "openrouter/deepseek/deepseek-r1"),
    ("deepseek/deepseek-r1:free", None, "openrouter/deepseek/deepseek-r1:free"),
    ("deepseek/deepseek-r1-distill-llama-70b", None, "openrouter/deepseek/deepseek-r1-distill-llama-70b"),
    ("deepseek-r1-distill-llama-70b", None, "groq/deepseek-r1-distill-llama-70b"),  # only Groq names it so
    ("anthropic/claude-3-opus", "openrouter", "openrouter/anthropic/claude-3-opus"),
    ("anthropic/claude-3.5-sonnet", "openrouter", "openrouter/anthropic/claude-3.5-sonnet"),
    ("anthropic/claude-3.5-sonnet:beta", "openrouter", "openrouter/anthropic/claude-3.5-sonnet"),
    ("anthropic/claude-3.5-sonnet:beta", None, "openrouter/anthropic/claude-3.5-sonnet"),
    ("anthropic/claude-3.7-sonnet:thinking", "openrouter", "openrouter/anthropic/claude-3.7-sonnet"),
    ("anthropic/claude-sonnet-4", "openrouter", "openrouter/anthropic/claude-sonnet-4"),
    ("openai/gpt-4o", "openrouter", "openrouter/openai/gpt-4o"),
    ("openai/gpt-4o:extended", "openrouter", "openrouter/openai/gpt-4o:extended"),
    ("openai/gpt-4o-mini", "openrouter", "openrouter/openai/gpt-4o-mini"),
    ("openai/gpt-4o-2024-05-13", "openrouter", "openrouter/openai/gpt-4o-2024-05-13"),
    ("openai/o1-mini", "openrouter", "openrouter/openai/o1-mini"),
    ("openai/gpt-oss-120b:free", None, "openrouter/openai/gpt-oss-120b:free"),
    ("google/gemini-2.5-pro", "openrouter", "openrouter/google/gemini-2.5-pro"),
    ("google/gemini-2.0-flash-001", "openrouter", "openrouter/google/gemini-2.0-flash-001"),
    ("google/gemini-2.0-flash-exp:free", None, "openrouter/google/gemini-2.0-flash-exp:free"),
    ("google/gemma-3-27b-it:free", None, "openrouter/google/gemma-3-27b-it:free"),
    ("google/gemma-2-9b-it", "openrouter", "openrouter/google/gemma-2-9b-it"),
    ("mistralai/mixtral-8x7b-instruct", "openrouter", "openrouter/mistralai/mixtral-8x7b-instruct"),
    ("mistralai/mistral-nemo:free", None, "openrouter/mistralai/mistral-nemo:free"),
    ("mistralai/mistral-7b-instruct:free", None, "openrouter/mistralai/mistral-7b-instruct:free"),
    ("x-ai/grok-3-beta", "openrouter", "openrouter/x-ai/grok-3-beta"),
    ("x-ai/grok-4.1-fast:free", None, "openrouter/x-ai/grok-4.1-fast:free"),
    ("cohere/command-r-plus-08-2024", "openrouter", "openrouter/cohere/command-r-plus-08-2024"),
    ("openrouter/anthropic/claude-3-opus", None, "openrouter/anthropic/claude-3-opus"),
    ("claude-3-opus", "openrouter", "openrouter/anthropic/claude-3-opus"),  # the one model named */claude-3-opus
    ("meta-llama/llama-3.1-8b-instruct", "OpenRouter", "openrouter/meta-llama/llama-3.1-8b-instruct"),
    # A leading vendor that names a first-party provider, without a hint: the maker's model.
    ("anthropic/claude-3-opus", None, "anthropic/claude-3-opus-latest"),
    ("anthropic/claude-3.5-sonnet", None, "anthropic/claude-3-5-sonnet"),
    ("anthropic/claude-sonnet-4", None, "anthropic/claude-sonnet-4-0"),
    ("openai/gpt-4o", None, "openai/gpt-4o"),
    ("openai/gpt-4o-mini", None, "openai/gpt-4o-mini"),
    ("openai/gpt-oss-120b", None, "openai/gpt-oss-120b"),
    ("google/gemini-2.5-pro", None, "google/gemini-2.5-pro"),
    ("google/gemma-3-27b-it", None, "google/gemma-3-27b-it"),
    ("deepseek/deepseek-chat", None, "deepseek/deepseek-chat"),
    ("deepseek/deepseek-r1", None, "deepseek/deepseek-r1"),
    ("mistralai/mistral-large", None, "mistral/mistral-large"),
    ("x-ai/grok-3-beta", None, "xai/grok-3"),
    ("x-ai/grok-4.3", None, "xai/grok-4.3"),
    ("cohere/command-r-plus-08-2024", None, "cohere/command-r-plus"),
    # ... but only where the maker's data names the string exactly: OpenRouter's own name wins over
    # a pattern of the maker's (Mistral's `mixtral-8x7b*` is not the model OpenRouter's hosts serve;
    # DeepSeek's `deepseek-r1*` is not a distilled Llama).
    ("google/gemini-2.0-flash-001", None, "openrouter/google/gemini-2.0-flash-001"),
    ("mistralai/mixtral-8x7b-instruct", None, "openrouter/mistralai/mixtral-8x7b-instruct"),
    ("deepseek/deepseek-r1-distill-qwen-32b", None, "openrouter/deepseek/deepseek-r1-distill-qwen-32b"),
    # Azure OpenAI: the deployment's model name, served by Azure.
    ("gpt-4o", "azure", "azure/gpt-4o"),
    ("gpt-4o-2024-08-06", "azure", "azure/gpt-4o"),
    ("gpt-4o-2024-11-20", "azure", "azure/gpt-4o"),
    ("gpt-4o-2024-05-13", "azure", "azure/gpt-4o-2024-05-13"),
    ("gpt-4o-mini", "azure", "azure/gpt-4o-mini"),
    ("gpt-4o-mini-2024-07-18", "azure_openai", "azure/gpt-4o-mini"),
    ("gpt-35-turbo", "azure", "azure/gpt-35-turbo"),
    ("gpt-35-turbo-16k-0613", "azure", "azure/gpt-35-turbo-16k"),
    ("gpt-4", "azure", "azure/gpt-4"),
    ("gpt-4-0613", "azure", "azure/gpt-4"),
    ("gpt-4-32k-0613", "azure", "azure/gpt-4-32k"),
    ("gpt-4-turbo-2024-04-09", "azure", "azure/gpt-4-turbo"),
    ("gpt-4.1-2025-04-14", "azure", "azure/gpt-4.1"),
    ("gpt-4.1-mini-2025-04-14", "azure-openai", "azure/gpt-4.1-mini"),
    ("gpt-5-2025-08-07", "azure", "azure/gpt-5"),
    ("gpt-5-mini-2025-08-07", "azure", "azure/gpt-5-mini"),
    ("o1-2024-12-17", "azure", "azure/o1"),
    ("o1-mini-2024-09-12", "azure", "azure/o1-mini"),
    ("o3-mini-2025-01-31", "Azure OpenAI", "azure/o3-mini"),
    ("o4-mini-2025-04-16", "azure", "azure/o4-mini"),
    ("text-embedding-3-large", "azure", "azure/text-embedding-3-large"),
    ("text-embedding-3-small", "azure", "azure/text-embedding-3-small"),
    ("text-embedding-ada-002", "azure", "azure/text-embedding-ada-002"),
    ("phi-4", "azure", "azure/phi-4"),
    ("openai/gpt-4o", "azure", "azure/gpt-4o"),
    ("gpt-4o-mini-2024-07-18.ft-0123456789abcdef", "azure", "azure/gpt-4o-mini"),
    # Groq, Together, Cerebras, Novita: their own names, with the hint.
    ("llama-3.1-8b-instant", "groq", "groq/llama-3.1-8b-instant"),
    ("llama-3.1-8b-instant", None, "groq/llama-3.1-8b-instant"),  # only Groq names it so
    ("llama-3.3-70b-versatile", "groq", "groq/llama-3.3-70b-versatile"),
    ("llama3-70b-8192", "groq", "groq/llama3-70b-8192"),
    ("llama3-8b-8192", "groq", "groq/llama3-8b-8192"),
    ("mixtral-8x7b-32768", "groq", "groq/mixtral-8x7b-32768"),
    ("gemma2-9b-it", "groq", "groq/gemma2-9b-it"),
    ("meta-llama/llama-4-scout-17b-16e-instruct", "groq", "groq/meta-llama/llama-4-scout-17b-16e-instruct"),
    ("openai/gpt-oss-120b", "groq", "groq/openai/gpt-oss-120b"),
    ("moonshotai/kimi-k2-instruct-0905", "groq", "groq/moonshotai/kimi-k2-instruct"),
    ("qwen/qwen3-32b", "groq", "groq/qwen/qwen3-32b"),
    (
        "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
        "together",
        "together/meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
    ),
    (
        "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo",
        "together_ai",
        "together/meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo",
    ),
    ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "togetherai", "together/meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    ("meta-llama/Llama-3.3-70B-Instruct-Turbo", None, "together/meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    ("Qwen/Qwen2.5-72B-Instruct-Turbo", "together", "together/Qwen/Qwen2.5-72B-Instruct-Turbo"),
    ("deepseek-ai/DeepSeek-V3", "together", "together/deepseek-ai/DeepSeek-V3"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "together", "together/mistralai/Mixtral-8x7B-Instruct-v0.1"),
    ("openai/gpt-oss-20b", "together", "together/openai/gpt-oss-20b"),
    ("BAAI/bge-base-en-v1.5", "together", "together/BAAI/bge-base-en-v1.5"),
    ("llama3.1-8b", "cerebras", "cerebras/llama3.1-8b"),
    ("llama-3.3-70b", "cerebras", "cerebras/llama-3.3-70b"),
    ("gpt-oss-120b", "cerebras", "cerebras/gpt-oss-120b"),
    ("qwen-3-32b", "cerebras", "cerebras/qwen-3-32b"),
    ("meta-llama/llama-3.1-8b-instruct", "novita", "novita/meta-llama/llama-3.1-8b-instruct"),
    ("deepseek/deepseek-v3-0324", "novita", "novita/deepseek/deepseek-v3-0324"),
    ("baai/bge-m3", "novita", "novita/baai/bge-m3"),
    # xAI.
    ("grok-3", None, "xai/grok-3"),
    ("grok-3-latest", None, "xai/grok-3"),
    ("grok-3-beta", None, "xai/grok-3"),
    ("grok-3-mini-beta", None, "xai/grok-3-mini"),
    ("grok-3-mini-fast-latest", None, "xai/grok-3-mini-fast"),
    ("grok-2-1212", None, "xai/grok-2-1212"),
    ("grok-2-latest", None, "xai/grok-2-1212"),
    ("grok-2-vision-1212", None, "xai/grok-2-vision-1212"),
    ("grok-4", None, "xai/grok-4-0709"),
    ("grok-4-0709", None, "xai/grok-4-0709"),
    ("grok-4-latest", None, "xai/grok-4-0709"),
    ("grok-4-fast-reasoning", None, "xai/grok-4-fast-reasoning"),
    ("grok-4-1-fast", None, "xai/grok-4-1-fast-reasoning"),
    ("grok-code-fast-1", None, "xai/grok-code-fast-1"),
    ("grok-3", "x-ai", "xai/grok-3"),
    ("grok-3", "xai", "xai/grok-3"),
    ("grok-4", "grok", "xai/grok-4-0709"),
    # Mistral.
    ("mistral-large-latest", None, "mistral/mistral-large"),
    ("mistral-large-2411", None, "mistral/mistral-large"),
    ("mistral-large-2407", None, "mistral/mistral-large"),
    ("mistral-small-latest", None, "mistral/mistral-small-latest"),
    ("mistral-small-2506", None, "mistral/mistral-small-3.2-24b-instruct"),
    ("mistral-medium-2505", None, "mistral/mistral-medium"),
    ("open-mistral-nemo", None, "mistral/open-mistral-nemo"),
    ("open-mistral-7b", None, "mistral/mistral-7b"),
    ("open-mixtral-8x22b", None, "mistral/mixtral-8x22b-instruct"),
    ("open-mixtral-8x7b", None, "mistral/mixtral-8x7b"),
    ("codestral-latest", None, "mistral/codestral-latest"),
    ("codestral-2501", None, "mistral/codestral-latest"),
    ("mistral-embed", None, "mistral/mistral-embed"),
    ("pixtral-large-2411", None, "mistral/pixtral-large-latest"),
    ("ministral-8b-2410", None, "mistral/ministral-8b"),
    ("magistral-medium-2506", None, "mistral/magistral-medium"),
    ("magistral-small-2506", None, "mistral/magistral-small-latest"),
    ("devstral-small-2505", None, "mistral/devstral-small"),
    ("mistral-saba-latest", None, "mistral/mistral-saba"),
    ("mistral-large-latest", "mistralai", "mistral/mistral-large"),
    ("mistral-large-latest", "mistral", "mistral/mistral-large"),
    # Cohere.
    ("command-r", None, "cohere/command-r"),
    ("command-r-08-2024", None, "cohere/command-r"),
    ("command-r-plus-08-2024", None, "cohere/command-r-plus"),
    ("command-r7b-12-2024", None, "cohere/command-r7b"),
    ("command-a-03-2025", None, "cohere/command-a"),
    ("command-light", None, "cohere/command-light"),
    ("embed-english-v3.0", None, "cohere/embed-english-v3.0"),
    ("embed-multilingual-v3.0", None, "cohere/embed-multilingual-v3.0"),
    ("embed-v4.0", None, "cohere/embed-v4.0"),
    ("c4ai-aya-expanse-32b", None, "cohere/c4ai-aya-expanse-32b"),
    ("command-r-08-2024", "cohere", "cohere/command-r"),
    # DeepSeek.
    ("deepseek-chat", None, "deepseek/deepseek-chat"),
    ("deepseek-reasoner", None, "deepseek/deepseek-reasoner"),
    ("deepseek-coder", None, "deepseek/deepseek-coder"),
    ("deepseek-r1-0528", None, "deepseek/deepseek-reasoner"),
    ("deepseek-chat", "deepseek", "deepseek/deepseek-chat"),
    ("deepseek-reasoner", "DeepSeek", "deepseek/deepseek-reasoner"),
    # Ollama tags: `name` is `name:latest`, and a size tag of a model the catalog lists untagged.
    ("llama3.1:8b", None, "ollama/llama3.1"),
    ("llama3.1", None, "ollama/llama3.1"),
    ("llama3.1:latest", None, "ollama/llama3.1"),
    ("llama3.1:8b", "ollama", "ollama/llama3.1"),
    ("llama3.1:70b", "ollama", "ollama/llama3.1"),
    ("llama3", None, "ollama/llama3"),
    ("llama3:latest", None, "ollama/llama3"),
    ("llama3:8b", None, "ollama/llama3:8b"),
    ("llama3:70b", None, "ollama/llama3:70b"),
    ("llama2:13b", None, "ollama/llama2:13b"),
    ("llama2:7b-chat", "ollama", "ollama/llama2"),
    ("mistral:latest", None, "ollama/mistral"),
    ("mistral:7b", "ollama", "ollama/mistral"),
    ("codellama:13b", None, "ollama/codellama"),
    ("codegemma:7b", None, "ollama/codegemma"),
    ("vicuna:latest", None, "ollama/vicuna"),
    ("orca-mini:3b", None, "ollama/orca-mini"),
    ("gpt-oss:120b-cloud", None, "ollama/gpt-oss:120b-cloud"),
    ("qwen3-coder:480b-cloud", "ollama", "ollama/qwen3-coder:480b-cloud"),
    ("llama3.1:8b", "ollama_chat", "ollama/llama3.1"),
    # Nothing to price: an unknown provider, a provider that does not serve the model, a provider
    # the catalog does not have in a string's own prefix, a local model the catalog does not list.
    ("gpt-4o", "fireworks", None),
    ("claude-3-5-sonnet-20241022", "openai", None),
    ("gpt-4o", "bedrock", None),
    ("gemini-1.5-pro@002", "vertex", None),
    ("llama3.1:8b", "openrouter", None),
    ("deepinfra/meta-llama/Meta-Llama-3.1-8B-Instruct", None, None),
    ("accounts/fireworks/models/llama-v3p1-8b-instruct", None, None),
    ("gpt-oss:20b", None, None),
    ("us.openai.gpt-5.6-sol", None, None),
]


def test_the_table_is_large_and_unique():
    assert len(REAL) >= 300
    assert len({(model, hint) for model, hint, _ in REAL}) == len(REAL)


@pytest.mark.parametrize(("model", "hint", "expected"), REAL, ids=[f"{m}|{h}" for m, h, _ in REAL])
def test_real_model_strings(resolver, model, hint, expected):
    assert model_id(resolver, model, hint) == expected


# The ambiguities the provider hint settles.


def test_a_routers_copy_needs_the_routers_hint(resolver):
    assert model_id(resolver, "deepseek/deepseek-chat") == "deepseek/deepseek-chat"
    assert model_id(resolver, "deepseek/deepseek-chat", "openrouter") == "openrouter/deepseek/deepseek-chat"
    assert model_id(resolver, "anthropic/claude-3-opus") == "anthropic/claude-3-opus-latest"
    assert model_id(resolver, "anthropic/claude-3-opus", "openrouter") == "openrouter/anthropic/claude-3-opus"


def test_a_hosts_copy_needs_the_hosts_hint(resolver):
    assert model_id(resolver, "gpt-4o") == "openai/gpt-4o"
    assert model_id(resolver, "gpt-4o", "azure") == "azure/gpt-4o"
    assert model_id(resolver, "claude-3-haiku-20240307") == "anthropic/claude-3-haiku"
    assert model_id(resolver, "claude-3-haiku-20240307", "bedrock") == (
        "bedrock/regional.anthropic.claude-3-haiku-20240307-v1:0"
    )


def test_a_free_variant_is_not_the_paid_one(resolver):
    assert (
        model_id(resolver, "meta-llama/llama-3.1-8b-instruct:free")
        == "openrouter/meta-llama/llama-3.1-8b-instruct:free"
    )
    assert model_id(resolver, "meta-llama/llama-3.1-8b-instruct") == "openrouter/meta-llama/llama-3.1-8b-instruct"
    # A free variant the catalog does not list stays unknown rather than charged the paid price.
    assert model_id(resolver, "meta-llama/llama-3.1-70b-instruct:free", "openrouter") is None
    assert model_id(resolver, "meta-llama/llama-3.1-70b-instruct", "openrouter") == (
        "openrouter/meta-llama/llama-3.1-70b-instruct"
    )


def test_a_routing_variant_is_the_same_model_unless_priced_apart(resolver):
    assert model_id(resolver, "openai/gpt-4o-mini:nitro", "openrouter") == "openrouter/openai/gpt-4o-mini"
    assert model_id(resolver, "openai/gpt-4o:extended", "openrouter") == "openrouter/openai/gpt-4o:extended"
    assert model_id(resolver, "openai/gpt-4o", "openrouter") == "openrouter/openai/gpt-4o"


def test_an_unknown_hint_resolves_nothing(resolver):
    assert resolver.provider_id("fireworks") is None
    assert model_id(resolver, "gpt-4o", "fireworks") is None
    assert model_id(resolver, "gpt-4o", "") == "openai/gpt-4o"  # a blank hint is no hint
    assert model_id(resolver, "gpt-4o", "   ") == "openai/gpt-4o"


def test_a_snapshot_priced_apart_stays_its_own_model(resolver):
    """gpt-4o-2024-05-13 costs 5/15, gpt-4o 2.5/10: stripping the date would undercharge."""
    assert model_id(resolver, "gpt-4o-2024-05-13") == "openai/gpt-4o-2024-05-13"
    assert model_id(resolver, "gpt-4o-2024-08-06") == "openai/gpt-4o"
    assert model_id(resolver, "gpt-4o-2024-05-13", "azure") == "azure/gpt-4o-2024-05-13"
    # Bedrock's global profile of Sonnet 4.5 costs less than the in-region one: each its own model.
    regional = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert model_id(resolver, regional) == "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert model_id(resolver, "global" + regional[2:]) == "bedrock/global.anthropic.claude-sonnet-4-5-20250929-v1:0"
    prices = {m["id"]: m["prices"][-1]["input"] for m in CATALOG["models"] if m["prices"]}
    assert prices["openai/gpt-4o-2024-05-13"] != prices["openai/gpt-4o"]


def test_bedrock_and_vertex_syntax_stand_for_the_hint(resolver):
    # Bedrock is the only provider that names a model so: no other provider's price applies.
    assert model_id(resolver, "us.openai.gpt-5.6-sol") is None
    assert model_id(resolver, "gpt-5.6-sol") == "openai/gpt-5.6-sol"
    path = "projects/p/locations/us-central1/publishers/google/models/gemini-1.5-pro-002"
    assert model_id(resolver, path) is None  # Vertex served it, and the catalog has no Vertex price for it
    assert model_id(resolver, "models/gemini-1.5-pro-002") == "google/gemini-1.5-pro"


def test_provider_spellings():
    resolver = Resolver(ENTRIES, ALIASES, PROVIDERS)
    spellings = {
        "gemini": "google",
        "google-ai-studio": "google",
        "Google AI Studio": "google",
        "vertex_ai": "vertex",
        "vertexai": "vertex",
        "google-vertex": "vertex",
        "vertex_ai-anthropic_models": "vertex",
        "aws": "bedrock",
        "amazon-bedrock": "bedrock",
        "aws-bedrock": "bedrock",
        "bedrock_converse": "bedrock",
        "azure_openai": "azure",
        "azure-openai": "azure",
        "x-ai": "xai",
        "grok": "xai",
        "mistralai": "mistral",
        "together_ai": "together",
        "togetherai": "together",
        "ollama": "ollama",
        "OpenRouter": "openrouter",
        " anthropic ": "anthropic",
        "groq": "groq",
    }
    assert {hint: resolver.provider_id(hint) for hint in spellings} == spellings


# Rules and how they are reported.


@pytest.mark.parametrize(
    ("model", "hint", "expected", "rule", "matched"),
    [
        ("openai/gpt-4o", None, "openai/gpt-4o", "id", "openai/gpt-4o"),
        ("gpt-4o-2024-08-06", None, "openai/gpt-4o", "alias", "gpt-4o-2024-08-06"),
        ("gpt-4o", "azure", "azure/gpt-4o", "name", "gpt-4o"),
        ("claude-3-5-sonnet-20241022", None, "anthropic/claude-3-5-sonnet", "match", "claude-3-5-sonnet-20241022"),
        ("models/gemini-1.5-flash", None, "google/gemini-1.5-flash", "alias", "gemini-1.5-flash"),
        # Fallbacks, on names no dataset lists (a future snapshot, a new Bedrock profile, ...).
        ("gpt-4o-mini-2031-01-01", None, "openai/gpt-4o-mini", "snapshot_suffix", "gpt-4o-mini"),
        ("gpt-4.1-20310101", None, "openai/gpt-4.1", "snapshot_suffix", "gpt-4.1"),
        ("o3-latest", None, "openai/o3", "snapshot_suffix", "o3"),
        ("gemini-2.5-pro", "vertex", "vertex/gemini-2.5-pro", "name", "gemini-2.5-pro"),
        ("gemini-2.5-flash@001", "vertex", "vertex/gemini-2.5-flash", "snapshot_suffix", "gemini-2.5-flash"),
        ("gpt-5.2-20251211", None, "openai/gpt-5.2", "compact_date", "gpt-5.2-2025-12-11"),
        ("qwen/qwen3-32b:online", "openrouter", "openrouter/qwen/qwen3-32b", "variant_suffix", "qwen/qwen3-32b"),
        ("vicuna:latest", None, "ollama/vicuna", "ollama_tag", "vicuna"),
        ("codellama:34b", None, "ollama/codellama", "ollama_tag", "codellama"),
        ("ca.deepseek.v3-v1:0", None, "bedrock/deepseek.v3-v1:0", "region_prefix", "deepseek.v3-v1:0"),
        ("zai.glm-4.7-v1:0", None, "bedrock/zai.glm-4.7", "version_suffix", "zai.glm-4.7"),
        ("openai/gpt-4o", "azure", "azure/gpt-4o", "vendor_path", "gpt-4o"),
        ("claude-3-opus", "openrouter", "openrouter/anthropic/claude-3-opus", "vendor_path", "claude-3-opus"),
        ("ft:gpt-5-mini-2025-08-07:acme::x1", None, "openai/gpt-5-mini", "fine_tune", "gpt-5-mini-2025-08-07"),
        ("ft:gpt-4o-2024-08-06:acme::x1", None, "openai/ft:gpt-4o-2024-08-06", "fine_tune", "ft:gpt-4o-2024-08-06"),
    ],
)
def test_rules_are_reported(resolver, model, hint, expected, rule, matched):
    found = resolver.resolve(model, hint)
    if expected is None:
        assert found is None
    else:
        assert found == Resolution(expected, rule, matched)


def test_case_and_space_do_not_matter(resolver):
    assert resolver.resolve("  Claude-3-5-Sonnet-20241022 ") == resolver.resolve("claude-3-5-sonnet-20241022")
    assert model_id(resolver, "GPT-4o", " Azure ") == "azure/gpt-4o"
    assert (
        model_id(resolver, "ollama/Mistral-7B-Instruct-v0.1") == "ollama/mistral-7B-Instruct-v0.1"
    )  # catalog spelling
    assert model_id(resolver, "") is None
    assert model_id(resolver, "   ") is None


def test_every_catalog_model_resolves_from_its_id_its_name_and_its_aliases(resolver):
    for model in CATALOG["models"]:
        assert resolver.resolve(model["id"]) == Resolution(model["id"], "id", model["id"].lower())
        assert model_id(resolver, model["name"], model["provider"]) == model["id"]
        for alias in model["aliases"]:
            assert model_id(resolver, alias) == model["id"]


def test_first_party_providers_are_the_importers():
    assert set(FIRST_PARTY) == set(ORIGIN_PROVIDERS)


# Aliases scoped by provider.


def small_resolver(aliases):
    entries = [
        Entry("openai/gpt-4o", "openai", "gpt-4o", {"or": [{"equals": "gpt-4o"}, {"equals": "gpt-4o-2024-08-06"}]}),
        Entry("openai/gpt-4o-mini", "openai", "gpt-4o-mini"),
        Entry("azure/gpt-4o", "azure", "gpt-4o"),
        Entry("azure/gpt-4o-mini", "azure", "gpt-4o-mini"),
        Entry("openrouter/openai/gpt-4o", "openrouter", "openai/gpt-4o"),
    ]
    return Resolver(entries, aliases, ["openai", "azure", "openrouter", "bedrock"])


def test_a_scoped_alias_applies_to_its_provider():
    resolver = small_resolver([AliasEntry("prod-4o", "azure/gpt-4o", "azure")])
    assert model_id(resolver, "prod-4o", "azure") == "azure/gpt-4o"
    assert model_id(resolver, "PROD-4o", "azure_openai") == "azure/gpt-4o"
    assert model_id(resolver, "prod-4o", "openai") is None
    assert model_id(resolver, "prod-4o", "openrouter") is None
    assert model_id(resolver, "prod-4o") == "azure/gpt-4o"  # no hint: like any alias


def test_a_scoped_alias_wins_over_a_name_and_may_point_elsewhere():
    """An Azure deployment named `gpt-4o` that runs gpt-4o-mini: the operator's alias says so."""
    resolver = small_resolver([AliasEntry("gpt-4o", "azure/gpt-4o-mini", "azure")])
    assert model_id(resolver, "gpt-4o", "azure") == "azure/gpt-4o-mini"
    assert model_id(resolver, "gpt-4o", "openai") == "openai/gpt-4o"
    resolver = small_resolver([AliasEntry("house", "openai/gpt-4o-mini", "azure")])
    assert model_id(resolver, "house", "azure") == "openai/gpt-4o-mini"


def test_an_unscoped_alias_never_crosses_the_hint():
    resolver = small_resolver([AliasEntry("house", "openai/gpt-4o")])
    assert model_id(resolver, "house") == "openai/gpt-4o"
    assert model_id(resolver, "house", "openai") == "openai/gpt-4o"
    assert model_id(resolver, "house", "azure") is None


def test_aliases_of_one_string_are_decided_by_the_provider_preference():
    aliases = [AliasEntry("fast", "azure/gpt-4o-mini", "azure"), AliasEntry("fast", "openai/gpt-4o-mini", "openai")]
    for ordered in (aliases, aliases[::-1]):
        resolver = small_resolver(ordered)
        assert model_id(resolver, "fast") == "openai/gpt-4o-mini"  # first-party first
        assert model_id(resolver, "fast", "azure") == "azure/gpt-4o-mini"
        assert model_id(resolver, "fast", "openai") == "openai/gpt-4o-mini"


def test_an_alias_of_a_missing_model_is_ignored():
    resolver = small_resolver([AliasEntry("gone", "openai/gpt-3")])
    assert model_id(resolver, "gone") is None


# Match clauses.


@pytest.mark.parametrize(
    ("clause", "yes", "no"),
    [
        ({"equals": "GPT-4o"}, ["gpt-4o"], ["gpt-4o-mini"]),
        ({"starts_with": "claude-3-5"}, ["claude-3-5-sonnet"], ["x-claude-3-5"]),
        ({"ends_with": "-v1:0"}, ["meta.llama3-v1:0"], ["meta.llama3-v1:0x"]),
        ({"contains": "nova-lite"}, ["us.amazon.nova-lite-v1:0"], ["nova-pro"]),
        ({"regex": r"^gpt-5\.6-luna-\d{4}-\d{2}-\d{2}$"}, ["gpt-5.6-luna-2026-07-09"], ["gpt-5.6-luna"]),
        ({"or": [{"equals": "a"}, {"starts_with": "b"}, {"contains": "c"}]}, ["a", "bx", "xcx"], ["ax", "xb"]),
        (
            {"and": [{"starts_with": "gemini-2.5-pro"}, {"regex": "^(?!.*-tts)"}]},
            ["gemini-2.5-pro-exp"],
            ["gemini-2.5-pro-tts"],
        ),
    ],
)
def test_match_clauses(clause, yes, no):
    matches = compile_match(clause)
    assert all(matches(text) for text in yes)
    assert not any(matches(text) for text in no)


@pytest.mark.parametrize(
    "clause",
    [{"equal": "x"}, {"equals": ""}, {"or": []}, {"and": "x"}, {"regex": "("}, {"equals": "a", "contains": "b"}, "x"],
)
def test_a_malformed_clause_is_refused_naming_the_model(clause):
    with pytest.raises(ValueError):
        compile_match(clause)
    with pytest.raises(ValueError, match="openai/gpt-4o"):
        Resolver([Entry("openai/gpt-4o", "openai", "gpt-4o", clause)], [], ["openai"])


def test_overlapping_clauses_the_more_specific_wins_whatever_the_order():
    entries = [
        Entry("p/broad", "p", "broad", {"starts_with": "model"}),
        Entry("p/narrow", "p", "narrow", {"starts_with": "model-x"}),
        Entry("p/exact", "p", "exact", {"or": [{"contains": "zzz"}, {"equals": "model-x-1"}]}),
    ]
    for ordered in (entries, entries[::-1]):
        resolver = Resolver(ordered, [], ["p"])
        assert model_id(resolver, "model-x-1") == "p/exact"
        assert model_id(resolver, "model-x-2") == "p/narrow"
        assert model_id(resolver, "model-y") == "p/broad"


# Determinism and the cache.


def test_the_input_order_does_not_change_any_answer(resolver):
    strings = [(model, hint) for model, hint, _ in REAL]
    strings += [(m["name"], None) for m in CATALOG["models"]]
    strings += [(m["name"].upper() + "-2031-01-01", None) for m in CATALOG["models"][::7]]
    expected = [resolver.resolve(model, hint) for model, hint in strings]
    shuffler = random.Random(20261121)
    for _ in range(3):
        entries, aliases, providers = list(ENTRIES), list(ALIASES), list(PROVIDERS)
        for items in (entries, aliases, providers):
            shuffler.shuffle(items)
        shuffled = Resolver(entries, aliases, providers)
        assert [shuffled.resolve(model, hint) for model, hint in strings] == expected


def test_a_seen_string_is_answered_from_the_cache(resolver):
    first = resolver.resolve("claude-3-5-sonnet-20241022")
    assert resolver.resolve("claude-3-5-sonnet-20241022") is first
    assert resolver.resolve("claude-3-5-sonnet-20241022", "bedrock") is not first  # the hint is part of the key
    unknown = resolver.resolve("no-such-model-anywhere")
    assert unknown is None and resolver.resolve("no-such-model-anywhere") is None
    per_hit = timeit.timeit(lambda: resolver.resolve("claude-3-5-sonnet-20241022"), number=20_000) / 20_000
    assert per_hit < 20e-6  # a dictionary hit (well under 1 µs), far below a cold resolve (BENCHMARKS.md)


def test_the_cache_is_bounded():
    resolver = Resolver(ENTRIES, ALIASES, PROVIDERS, cache_size=10)
    first = resolver.resolve("gpt-4o-2024-08-06")
    assert resolver.resolve("gpt-4o-2024-08-06") is first
    for n in range(10):
        resolver.resolve(f"unknown-model-{n}")
    again = resolver.resolve("gpt-4o-2024-08-06")
    assert again == first and again is not first  # emptied when full, answered again by the rules
    assert len(resolver._cache) <= 10
