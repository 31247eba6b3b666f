"""Model resolution: which catalog model a usage event's model string means.

A usage event names the model as the provider's response did (`claude-3-5-sonnet-20241022`,
`models/gemini-1.5-pro-002`, `us.anthropic.claude-3-5-sonnet-20241022-v2:0`,
`meta-llama/llama-3.1-8b-instruct`, `llama3.1:8b`), optionally with a hint of who served the call.
`Resolver.resolve(model, provider)` answers one catalog model id, or None: the event then stays
unrated until the catalog learns the string (an alias, a model). The module is pure (no I/O, no
clock, standard library only: scripts/build_catalog.py imports it to check the catalog it writes).

Rules

1. Case and space. Matching is case-insensitive throughout (model strings, ids, names, aliases,
   match clauses, hints) and the model string is trimmed; the answer is the catalog's own spelling
   of the id. A blank model string resolves nothing; a blank hint is no hint. The same catalog
   always gives the same answers, whatever the order of the entries given.

2. Provider hint. `provider_id(hint)` maps a hint to a catalog provider: a provider id as it is,
   or a common spelling from `HINT_SPELLINGS` (`gemini`, `google-ai-studio` -> google; `vertex_ai`,
   `vertexai`, `google-vertex`, LiteLLM's `vertex_ai-*` -> vertex; `aws`, `amazon-bedrock`,
   `aws-bedrock` -> bedrock; `azure_openai`, `azure-openai` -> azure; `x-ai`, `grok` -> xai;
   `mistralai` -> mistral; `together_ai`, `togetherai` -> together; ...), with `_`, `.` and spaces
   read as `-`. With a hint the string resolves only among that provider's models, plus the aliases
   an operator scoped to that provider: a call is never priced at another provider's price. A hint
   that names no catalog provider resolves nothing.

3. Wrappers. What providers wrap around a name is removed: Gemini `models/<name>`; Vertex
   `publishers/<vendor>/models/<name>` and `projects/<p>/locations/<l>/publishers/<vendor>/models/<name>`;
   Bedrock ARNs `arn:aws:bedrock:<region>:<account>:foundation-model/<id>` and `.../inference-profile/<id>`.
   The string as given is tried first, against ids and aliases only (an operator may alias a whole
   ARN or a deployment name). Syntax only one provider uses stands for the hint when there is none,
   and restricts the answer in the same way: a Vertex resource name means vertex; a Bedrock ARN,
   `<region>.<vendor>.<model>`, `<vendor>.<model>` (`anthropic.`, `meta.`, `amazon.`, ... :
   BEDROCK_VENDORS and the vendors of the catalog's Bedrock names) or a `-v1:0` suffix means
   bedrock; an OpenAI fine-tune id `ft:...` means openai.

4. Data rules, for one string, in this order (`rule` in the answer names the one that matched):
   - `id`: a catalog id, `provider/name` (with a hint: an id of that provider).
   - `alias`: an alias row. Aliases with provider "" apply to any call, but with a hint only when
     their model belongs to the hinted provider; an alias scoped to a provider (an Azure deployment
     name, say) applies when the hint names that provider, whatever model it points to, and
     without a hint like any other alias. An alias `<provider>/<x>` of that provider's model also
     answers `<x>` for that provider (a host's dated snapshot: `azure/gpt-4o-2024-08-06`).
     Without a hint, several aliases of one string are decided by the provider preference (6) of
     their models, then unscoped before scoped, then the model id.
   - `name`: the name of a model of the provider in question (`gpt-4o` with hint azure is `azure/gpt-4o`).
   - `match`: a model's match clause, genai-prices' rules for the snapshots and spellings it prices
     alike (`{"starts_with": "claude-3-5-sonnet"}` answers `claude-3-5-sonnet-20241022`), as its data
     writes them: `{"equals": s}`, `{"starts_with": s}`, `{"ends_with": s}`, `{"contains": s}`
     (case-insensitive), `{"regex": r}` (`re.search` on the lower-cased string), `{"or": [...]}`,
     `{"and": [...]}`. genai-prices takes the first model of a provider in its data order whose
     clause matches; its clauses do not overlap within a provider (scripts/build_catalog.py checks
     this on every model string the datasets name), so that order never decides. Should two
     clauses of one provider still match one string, the more specific wins (`equals`, then
     `starts_with`/`ends_with`, then `contains`/`regex`; then the longer literal), then the lower
     id. A string ending in `:free` matches only an `equals`: a free variant is known exactly or not
     at all.
   A snapshot the data prices apart stays its own model: the data rules see the whole string before
   any fallback (5) shortens it.

5. Fallbacks, only when no data rule knows the string. Each rewrites the string and the data rules
   run again on the result; they apply cumulatively, in this order, and `rule` names the last one
   applied (`matched` shows the string that matched):
   - `variant_suffix`: an OpenRouter routing variant (VARIANTS: `:beta`, `:thinking`, `:extended`,
     `:nitro`, `:floor`, `:online`, `:exacto`) is dropped; `gpt-4o:extended`, which the data prices
     apart, has matched before. `:free` is never dropped: no fallback applies to a `:free` string,
     so a free call is not charged the paid price.
   - `ollama_tag`: `name:latest` is `name`.
   - `fine_tune`: OpenAI `ft:<base>:<org>:<suffix>:<id>` is `ft:<base>` where the catalog has a
     fine-tune price (tried before the whole id), else `<base>` and so the base model's price; Azure
     `<base>.ft-<id>` is `<base>`.
   - Bedrock syntax only: `region_prefix` drops a cross-region prefix (BEDROCK_REGIONS: `us.`,
     `eu.`, `apac.`, `au.`, `ca.`, `jp.`, `in.`, `global.`, `us-gov.`), `version_suffix` a version
     (`-v1:0`, `-v2`, `:0`), `vendor_prefix` the vendor (`anthropic.`).
   - `at_version`: Vertex `@version` becomes `-version` (`gemini-1.5-pro@002` -> `gemini-1.5-pro-002`).
   - `compact_date`: `-YYYYMMDD` is also tried as `-YYYY-MM-DD`, as genai-prices does.
   - `snapshot_suffix`: one trailing `-YYYY-MM-DD`, `-YYYYMMDD`, `-0NN` (`-002`) or `-latest` is dropped.
   - `vendor_path`, only with a hint (or the Vertex soft hint, 6b): a leading `<segment>/` is
     dropped (`openai/gpt-4o` with hint azure), or a bare name is the one model of that provider
     named `<vendor>/<name>` (`claude-3-opus` with hint openrouter).
   - `ollama_tag`: `name:<tag>` is the Ollama model `name` (`llama3.1:8b`); only an Ollama model,
     and only without a hint or with hint ollama.

6. Without a hint, each string (as given, unwrapped, then each fallback) is tried in this order:
   a. an id of any provider, then an alias;
   b. the soft hints, what the string's syntax suggests without excluding the others: Vertex for a
      `@version`; for `<vendor>/<rest>` where `<vendor>` names a provider (`anthropic/claude-3-opus`,
      `x-ai/grok-3`, `google/...`) and `<rest>` has no `:variant` (a router's product), `<rest>`
      among that provider's models. Here only what names the string exactly counts: an id, alias or
      name, a clause's `equals`, or a clause's `starts_with` that is all of the string (Anthropic's
      `{"starts_with": "claude-3-opus"}`: `anthropic/claude-3-opus` is Anthropic's model, not
      OpenRouter's copy of it);
   c. a model named exactly so (its name, an alias, an `equals` of its clause), among the
      first-party providers (FIRST_PARTY), then the routers (ROUTERS), then the hosts (HOSTS, then
      any other provider by id);
   d. any clause of the soft hints' providers (`gemini-1.5-pro@002`: Vertex first);
   e. any clause, first-party providers first, then routers, then hosts.
   So a first-party model wins over a router's or host's copy, between copies that fixed preference
   decides, and a model the data names exactly wins over another provider's pattern (Groq's
   `deepseek-r1-distill-llama-70b` is not the `deepseek-r1*` of DeepSeek's clause). A
   `<vendor>/<rest>` string is only looked for among providers with models in that vendor's
   namespace: `deepinfra/anthropic/claude-opus-4-7` names a provider the catalog does not have and
   resolves nothing.

7. Speed. The answer for a (hint, string) pair seen before is a dictionary hit: a cache of
   CACHE_SIZE answers (unknown strings included), emptied when full. A Resolver is built per
   catalog snapshot, so a catalog change starts from an empty cache. Measurements: BENCHMARKS.md.

A malformed match clause makes the Resolver raise ValueError naming the model: `compile_match`
checks a clause before it is stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

# Model makers: their own models win over a router's or host's copy (as importer.ORIGIN_PROVIDERS).
FIRST_PARTY = ("openai", "anthropic", "google", "cohere", "mistral", "deepseek", "xai")
ROUTERS = ("openrouter",)
# Between hosts' copies, when no hint says which served a call: the big clouds, then the others;
# local Ollama last, as it prices everything at 0.
HOSTS = ("azure", "bedrock", "vertex", "groq", "together", "cerebras", "novita", "featherless", "ollama")

# Spellings of providers seen in gateways and SDKs, after lower-casing and `_`/`.`/space -> `-`.
HINT_SPELLINGS = {
    "gemini": "google",
    "google-ai-studio": "google",
    "google-ai": "google",
    "googleai": "google",
    "google-gemini": "google",
    "gemini-api": "google",
    "vertex-ai": "vertex",
    "vertexai": "vertex",
    "google-vertex": "vertex",
    "google-vertex-ai": "vertex",
    "vertex-ai-beta": "vertex",
    "aws": "bedrock",
    "amazon-bedrock": "bedrock",
    "aws-bedrock": "bedrock",
    "bedrock-converse": "bedrock",
    "azure-openai": "azure",
    "azureopenai": "azure",
    "azure-ai": "azure",
    "azure-text": "azure",
    "x-ai": "xai",
    "grok": "xai",
    "mistralai": "mistral",
    "mistral-ai": "mistral",
    "codestral": "mistral",
    "together-ai": "together",
    "togetherai": "together",
    "ollama-chat": "ollama",
    "text-completion-openai": "openai",
    "cohere-chat": "cohere",
    "open-router": "openrouter",
    "novita-ai": "novita",
    "featherless-ai": "featherless",
}

CACHE_SIZE = 50_000

# OpenRouter's routing variants: the same model and price. `:free` is not one of them.
VARIANTS = ("beta", "thinking", "extended", "nitro", "floor", "online", "exacto")
BEDROCK_REGIONS = ("us", "eu", "apac", "au", "ca", "jp", "in", "global", "us-gov")
# Model vendors in Bedrock ids (`anthropic.claude-...`); vendors of the catalog's Bedrock models join them.
BEDROCK_VENDORS = (
    "ai21",
    "amazon",
    "anthropic",
    "cohere",
    "deepseek",
    "google",
    "meta",
    "minimax",
    "mistral",
    "moonshot",
    "moonshotai",
    "nvidia",
    "openai",
    "qwen",
    "stability",
    "twelvelabs",
    "writer",
    "zai",
)

_ARN = re.compile(r"^arn:aws[a-z-]*:bedrock:[^:]*:[^:]*:(?:foundation-model|inference-profile)/(.+)$")
_VERTEX_PATH = re.compile(r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/[^/]+/models/(.+)$")
_GEMINI_PATH = re.compile(r"^models/(.+)$")
_VARIANT = re.compile(r"^(.+):(?:" + "|".join(VARIANTS) + r")$")
_FINE_TUNE = re.compile(r"^ft:([^:]+):")
_AZURE_FINE_TUNE = re.compile(r"^(.+)\.ft-[0-9a-z]+$")
_BEDROCK_VERSION = re.compile(r"^(.+?)(?:-v\d+(?::\d+)?|:\d+)$")
_COMPACT_DATE = re.compile(r"^(.+-)(20\d\d)(\d\d)(\d\d)$")
_SNAPSHOT = (
    re.compile(r"^(.+)-(20\d\d)-(\d\d)-(\d\d)$"),
    re.compile(r"^(.+)-(20\d\d)(\d\d)(\d\d)$"),
    re.compile(r"^(.+)-(0\d\d)$"),
    re.compile(r"^(.+)-(latest)$"),
)
_BEDROCK_SUFFIX = re.compile(r"-v\d+:\d+$")
_ROUTER_VARIANT = re.compile(r":[a-z][a-z-]*$")
_OLLAMA_TAG = re.compile(r"^([^:/]+):([0-9a-z._-]+)$")


_PROFILE = re.compile(r"^(" + "|".join(re.escape(region) for region in BEDROCK_REGIONS) + r")\.[a-z0-9-]+\.")


def bedrock_region(model: str) -> str | None:
    """The geography of a Bedrock cross-region inference profile a model string names
    (`us.anthropic.claude-sonnet-4-5-20250929-v1:0`, or its ARN): Bedrock prices some profiles apart
    from the model in one region, so the profile is the call's region (`us`, `eu`, `global`, ...)."""
    if "." not in model:  # most model strings: no profile
        return None
    text = model.strip().lower()
    arn = _ARN.match(text)
    found = _PROFILE.match(arn.group(1) if arn else text)
    return found.group(1) if found else None


@dataclass(frozen=True, slots=True)
class Entry:
    """What the resolver needs of a catalog model."""

    id: str  # "provider/name"
    provider: str
    name: str
    match: Mapping[str, Any] | None = None  # a genai-prices match clause as JSON


@dataclass(frozen=True, slots=True)
class AliasEntry:
    alias: str
    model_id: str
    provider: str = ""  # "" = any call; else calls served by that provider (an Azure deployment name)


@dataclass(frozen=True, slots=True)
class Resolution:
    model_id: str
    rule: str  # id, alias, name, match, or the last fallback applied (see the module docstring)
    matched: str  # the normalised string that matched, for explanations


Matcher = Callable[[str], bool]
Found = tuple[str, str, str] | None  # (model id, rule, the string matched)

# Specificity of a clause kind, for the (never expected) case of two clauses of a provider matching.
_KIND_RANK = {"equals": 3, "starts_with": 2, "ends_with": 2, "contains": 1, "regex": 1}


def compile_match(clause: Any) -> Matcher:
    """A match clause as a predicate on a lower-cased string. ValueError names what is malformed."""
    kind, arg = _clause_parts(clause)
    if kind in ("or", "and"):
        parts = [compile_match(c) for c in arg]
        if kind == "and":
            return lambda text: all(part(text) for part in parts)
        # Most clauses are an `or` of literals: checked with set and tuple operations, not one call each.
        leaves = [(next(iter(c)), c) for c in arg]
        equals = frozenset(c["equals"].lower() for k, c in leaves if k == "equals")
        prefixes = tuple(c["starts_with"].lower() for k, c in leaves if k == "starts_with")
        suffixes = tuple(c["ends_with"].lower() for k, c in leaves if k == "ends_with")
        contained = tuple(c["contains"].lower() for k, c in leaves if k == "contains")
        others = [part for (k, _), part in zip(leaves, parts, strict=True) if k in ("regex", "or", "and")]

        def any_of(text: str) -> bool:
            if text in equals or (prefixes and text.startswith(prefixes)) or (suffixes and text.endswith(suffixes)):
                return True
            for literal in contained:
                if literal in text:
                    return True
            return bool(others) and any(part(text) for part in others)

        return any_of
    if kind == "regex":
        pattern = re.compile(arg)
        return lambda text: pattern.search(text) is not None
    literal = arg.lower()
    if kind == "equals":
        return literal.__eq__
    if kind == "starts_with":
        return lambda text: text.startswith(literal)
    if kind == "ends_with":
        return lambda text: text.endswith(literal)
    return lambda text: literal in text


def _clause_parts(clause: Any) -> tuple[str, Any]:
    if not isinstance(clause, dict | Mapping) or len(clause) != 1:
        raise ValueError(f"a match clause is an object with one key, not {clause!r}")
    ((kind, arg),) = clause.items()
    if kind in ("or", "and"):
        if not isinstance(arg, list) or not arg:
            raise ValueError(f"{kind!r} takes a non-empty list of clauses, not {arg!r}")
    elif kind in _KIND_RANK:
        if not isinstance(arg, str) or not arg:
            raise ValueError(f"{kind!r} takes a non-empty string, not {arg!r}")
        if kind == "regex":
            try:
                re.compile(arg)
            except re.error as exc:
                raise ValueError(f"bad regex {arg!r}: {exc}") from None
    else:
        raise ValueError(f"unknown match clause {kind!r}")
    return kind, arg


def specificity(clause: Mapping[str, Any], text: str) -> tuple[int, int]:
    """How specifically a clause matches `text` (lower-cased): (kind rank, literal length); (0, 0) if not."""
    kind, arg = _clause_parts(clause)
    if kind == "or":
        return max(specificity(c, text) for c in arg)
    if kind == "and":
        scores = [specificity(c, text) for c in arg]
        return (0, 0) if min(scores) == (0, 0) else max(scores)
    return (_KIND_RANK[kind], len(arg)) if compile_match(clause)(text) else (0, 0)


def _hint_key(text: str) -> str:
    return re.sub(r"[\s_.]+", "-", text.strip().lower())


_MISS = object()


class Resolver:
    """Resolves (model string, provider hint) to a catalog model id, by the rules in the module
    docstring. Built once per catalog snapshot; `resolve` is then a dictionary hit for a pair seen
    before."""

    def __init__(
        self,
        entries: Iterable[Entry],
        aliases: Iterable[AliasEntry],
        providers: Iterable[str],
        *,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        entries = sorted(entries, key=lambda e: e.id)
        known = {p.lower(): p for p in sorted(providers)}
        known.update({e.provider.lower(): e.provider for e in entries if e.provider.lower() not in known})
        self._providers = known
        preference = [p for p in (*FIRST_PARTY, *ROUTERS, *HOSTS) if p in known]
        preference += sorted(p for p in known if p not in preference)
        self._rank = {p: i for i, p in enumerate(preference)}
        self._classes = (
            tuple(p for p in preference if p in FIRST_PARTY),
            tuple(p for p in preference if p in ROUTERS),
            tuple(p for p in preference if p not in FIRST_PARTY and p not in ROUTERS),
        )

        self._ids: dict[str, str] = {}  # lower id -> id
        self._provider_of: dict[str, str] = {}  # id -> lower provider
        self._names: dict[tuple[str, str], str] = {}  # (provider, lower name) -> id
        leaves: dict[tuple[str, str], list[str]] = {}  # (provider, name after its last "/") -> ids
        self._equals: dict[tuple[str, str], list[str]] = {}  # (provider, s) -> ids whose clause has equals s
        self._prefixes: dict[tuple[str, str], list[str]] = {}  # (provider, s) -> ids whose clause has starts_with s
        self._clauses: dict[str, list[tuple[str, Matcher]]] = {}  # provider -> [(id, the rest of its clause)]
        self._match_of: dict[str, Mapping[str, Any]] = {}
        self._namespaces: set[tuple[str, str]] = set()  # (provider, vendor) of its `vendor/model` names
        vendors = set(BEDROCK_VENDORS)
        for entry in entries:
            provider = entry.provider.lower()
            self._ids.setdefault(entry.id.lower(), entry.id)
            self._provider_of[entry.id] = provider
            name = entry.name.lower()
            self._names.setdefault((provider, name), entry.id)
            if "/" in name:
                self._namespaces.add((provider, name.split("/", 1)[0]))
                leaves.setdefault((provider, name.rsplit("/", 1)[1]), []).append(entry.id)
            if provider == "bedrock":
                head = _bedrock_vendor(name)
                if head:
                    vendors.add(head)
            if entry.match is not None:
                self._add_clause(provider, entry.id, entry.match)
        self._leaves = {key: ids[0] for key, ids in leaves.items() if len(ids) == 1}
        regions = "|".join(re.escape(r) for r in BEDROCK_REGIONS)
        vendor_names = "|".join(re.escape(v) for v in sorted(vendors, key=lambda v: (-len(v), v)))
        self._bedrock_syntax = re.compile(rf"^(?:(?:{regions})\.)?(?:{vendor_names})\.[a-z0-9]")
        self._region = re.compile(rf"^(?:{regions})\.(?=(?:{vendor_names})\.)")
        self._vendor = re.compile(rf"^(?:{vendor_names})\.(?=[a-z0-9])")

        # Aliases. Unscoped ones: by string, and under their model's provider (bare, and without a
        # "<provider>/" prefix naming it). Scoped ones: under their provider.
        candidates: dict[str, list[tuple[tuple, str]]] = {}  # lower alias -> [(preference, id)]
        self._scoped: dict[tuple[str, str], str] = {}
        self._qualified: dict[tuple[str, str], str] = {}
        for row in sorted(aliases, key=lambda a: (a.alias.lower(), a.provider.lower(), a.model_id)):
            if row.model_id not in self._provider_of:
                continue  # an alias of a model this snapshot does not have
            alias, scope = row.alias.strip().lower(), row.provider.strip().lower()
            target = self._provider_of[row.model_id]
            if scope:
                self._scoped.setdefault((scope, alias), row.model_id)
            else:
                self._qualified.setdefault((target, alias), row.model_id)
                head, _, rest = alias.partition("/")
                if rest and head == target:
                    self._qualified.setdefault((target, rest), row.model_id)
            key = (self._rank.get(target, len(self._rank)), bool(scope), row.model_id)
            candidates.setdefault(alias, []).append((key, row.model_id))
        self._global_alias = {alias: min(found)[1] for alias, found in candidates.items()}

        self._cache: dict[tuple[str | None, str], Resolution | None] = {}
        self._cache_size = cache_size

    def _add_clause(self, provider: str, model_id: str, clause: Mapping[str, Any]) -> None:
        """Plain `equals` literals (most of the data) go to a dictionary; the rest is a predicate."""
        try:
            kind, arg = _clause_parts(clause)
            leaves = [clause] if kind != "or" else arg
            literals = [_clause_parts(c) for c in leaves]
            rest = [c for c, (kind, _) in zip(leaves, literals, strict=True) if kind != "equals"]
            for kind, literal in literals:
                if kind == "equals":
                    self._equals.setdefault((provider, literal.lower()), []).append(model_id)
                elif kind == "starts_with":
                    self._prefixes.setdefault((provider, literal.lower()), []).append(model_id)
            if rest:
                predicate = compile_match(rest[0] if len(rest) == 1 else {"or": rest})
                self._clauses.setdefault(provider, []).append((model_id, predicate))
        except ValueError as exc:
            raise ValueError(f"model {model_id}: {exc}") from None
        self._match_of[model_id] = clause

    # Public API

    def provider_id(self, hint: str) -> str | None:
        """A provider hint as a catalog provider id, or None when it names none."""
        key = _hint_key(hint)
        if key in self._providers:
            return self._providers[key]
        if key.startswith("vertex-ai-"):  # LiteLLM's Vertex families: vertex_ai-anthropic_models, ...
            key = "vertex-ai"
        spelled = HINT_SPELLINGS.get(key)
        return self._providers.get(spelled) if spelled else None

    def resolve(self, model: str, provider: str | None = None) -> Resolution | None:
        key = (provider, model)
        found = self._cache.get(key, _MISS)
        if found is _MISS:
            found = self._resolve(model, provider)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[key] = found
        return found

    # Rules

    def _resolve(self, model: str, provider: str | None) -> Resolution | None:
        text = model.strip().lower()
        if not text:
            return None
        hint = None
        if provider is not None and provider.strip():
            hint = self.provider_id(provider)
            if hint is None:
                return None
            hint = hint.lower()

        # The string as given: only ids and aliases (an operator's alias of a whole ARN).
        found = self._hinted_exact(hint, text) if hint else self._exact(text)
        if found:
            return Resolution(*found)
        unwrapped, implied = self._unwrap(text)
        if hint is None and implied:
            hint = implied  # only Bedrock, or only Vertex, names models this way
        soft = ("vertex",) if hint is None and "@" in unwrapped and "vertex" in self._providers else ()
        for candidate, rule in self._forms(unwrapped):
            if rule == "ollama_tag:size":
                found = self._ollama(hint, candidate)
                rule = "ollama_tag"
            elif hint:
                found = self._hinted(hint, candidate, vendor_path=rule == "vendor_path")
            else:
                found = self._unhinted(candidate, soft, vendor_path=rule == "vendor_path")
            if found:
                return Resolution(found[0], rule or found[1], found[2])
        return None

    def _unwrap(self, text: str) -> tuple[str, str | None]:
        """The name inside a provider's wrapping, and the provider whose syntax it is, if only one
        provider writes model names that way: Bedrock (ARNs, `<region>.<vendor>.<model>`,
        `<vendor>.<model>`, `-v1:0`) and Vertex (`publishers/.../models/...`)."""
        implied = None
        arn = _ARN.match(text)
        if arn:
            text, implied = arn.group(1), "bedrock"
        vertex = _VERTEX_PATH.match(text)
        if vertex:
            text, implied = vertex.group(1), "vertex"
        gemini = _GEMINI_PATH.match(text)
        if gemini:
            text = gemini.group(1)
        if self._bedrock_syntax.match(text) or _BEDROCK_SUFFIX.search(text):
            implied = "bedrock"
        elif _FINE_TUNE.match(text):
            implied = "openai"
        return text, implied if implied in self._providers else None

    def _forms(self, text: str) -> list[tuple[str, str]]:
        """The string, then its fallback rewrites in order: (string, rule that produced it)."""
        forms = [(text, "")]
        if text.endswith(":free"):  # a free variant is known exactly or not at all
            return [*forms, (text, "vendor_path")]
        fine_tune = _FINE_TUNE.match(text)
        if fine_tune:  # a fine-tune price in the catalog first, then what its clauses say of the full id
            forms.insert(0, (f"ft:{fine_tune.group(1)}", "fine_tune"))

        def add(new: str, rule: str) -> None:
            if new and new != forms[-1][0]:
                forms.append((new, rule))

        current = text
        variant = _VARIANT.match(current)
        if variant:
            current = variant.group(1)
            add(current, "variant_suffix")
        if current.endswith(":latest"):
            current = current[: -len(":latest")]
            add(current, "ollama_tag")
        if fine_tune:
            current = fine_tune.group(1)
            add(current, "fine_tune")
        azure_ft = _AZURE_FINE_TUNE.match(current)
        if azure_ft:
            current = azure_ft.group(1)
            add(current, "fine_tune")
        if self._bedrock_syntax.match(current):
            region = self._region.match(current)
            if region:
                current = current[region.end() :]
                add(current, "region_prefix")
            version = _BEDROCK_VERSION.match(current)
            if version:
                current = version.group(1)
                add(current, "version_suffix")
            vendor = self._vendor.match(current)
            if vendor:
                current = current[vendor.end() :]
                add(current, "vendor_prefix")
        if "@" in current:
            current = current.replace("@", "-")
            add(current, "at_version")
        compact = _COMPACT_DATE.match(current)
        if compact and _is_date(compact.group(2), compact.group(3), compact.group(4)):
            add(f"{compact.group(1)}{compact.group(2)}-{compact.group(3)}-{compact.group(4)}", "compact_date")
        for pattern in _SNAPSHOT:
            snapshot = pattern.match(current)
            if snapshot and (len(snapshot.groups()) != 4 or _is_date(*snapshot.groups()[1:])):
                current = snapshot.group(1)
                add(current, "snapshot_suffix")
                break
        forms.append((text, "vendor_path"))
        if current != text:
            forms.append((current, "vendor_path"))
        tag = _OLLAMA_TAG.match(text)
        if tag:
            forms.append((tag.group(1), "ollama_tag:size"))
        return forms

    # Each rule answers (model id, rule, the string it matched) or None.

    def _exact(self, text: str) -> Found:
        model_id = self._ids.get(text)
        if model_id:
            return model_id, "id", text
        model_id = self._global_alias.get(text)
        return (model_id, "alias", text) if model_id else None

    def _hinted_exact(self, provider: str, text: str) -> Found:
        model_id = self._ids.get(text)
        if model_id and self._provider_of[model_id] == provider:
            return model_id, "id", text
        model_id = self._scoped.get((provider, text)) or self._qualified.get((provider, text))
        return (model_id, "alias", text) if model_id else None

    def _hinted(self, provider: str, text: str, *, vendor_path: bool = False) -> Found:
        if vendor_path:
            _, _, rest = text.partition("/")
            if rest:
                return self._hinted(provider, rest)
            model_id = self._leaves.get((provider, text))
            return (model_id, "name", text) if model_id else None
        found = self._hinted_exact(provider, text)
        if found:
            return found
        model_id = self._names.get((provider, text))
        if model_id:
            return model_id, "name", text
        model_id = self._match(provider, text)
        return (model_id, "match", text) if model_id else None

    def _unhinted(self, text: str, soft: tuple[str, ...], *, vendor_path: bool = False) -> Found:
        if vendor_path:
            # Only where the string itself says who served it.
            for provider in soft:
                found = self._hinted(provider, text, vendor_path=True)
                if found:
                    return found
            return None
        found = self._exact(text)
        if found:
            return found
        hints = [(provider, text) for provider in soft]
        head, _, rest = text.partition("/")
        if rest and not _ROUTER_VARIANT.search(rest):  # a `:variant` is a router's product, not the vendor's
            vendor = self.provider_id(head)
            if vendor:
                hints.append((vendor.lower(), rest))
        classes = self._classes
        if rest:  # a `vendor/model` string is only looked for among providers with models in that namespace
            classes = tuple([p for p in providers if (p, head) in self._namespaces] for providers in classes)
        # What the data names exactly first (the hinted providers, then by class), then the patterns.
        for provider, string in hints:
            found = self._hinted_exact(provider, string) or self._named(provider, string, prefix=True)
            if found:
                return found
        for providers in classes:
            for provider in providers:
                found = self._named(provider, text)
                if found:
                    return found
        for provider, string in hints:
            model_id = self._match(provider, string)
            if model_id:
                return model_id, "match", string
        for providers in classes:
            for provider in providers:
                model_id = self._match(provider, text)
                if model_id:
                    return model_id, "match", text
        return None

    def _named(self, provider: str, text: str, *, prefix: bool = False) -> Found:
        """A model of the provider that the data names `text` exactly: its name, an alias, an
        `equals` of its clause; with `prefix`, also a `starts_with` of its clause that is all of
        `text` (`claude-3-opus` for Anthropic's `{"starts_with": "claude-3-opus"}`)."""
        key = (provider, text)
        model_id = self._names.get(key)
        if model_id:
            return model_id, "name", text
        model_id = self._qualified.get(key)
        if model_id:
            return model_id, "alias", text
        found = self._equals.get(key) or (self._prefixes.get(key) if prefix else None)
        return (self._most_specific(found, text), "match", text) if found else None

    def _ollama(self, hint: str | None, text: str) -> Found:
        if hint not in (None, "ollama"):
            return None
        model_id = self._names.get(("ollama", text))
        return (model_id, "name", text) if model_id else None

    def _match(self, provider: str, text: str) -> str | None:
        found = list(self._equals.get((provider, text), ()))
        if not text.endswith(":free"):  # a free variant only by its exact name
            for model_id, matches in self._clauses.get(provider, ()):
                if matches(text):
                    found.append(model_id)
        return self._most_specific(found, text) if found else None

    def _most_specific(self, found: list[str], text: str) -> str:
        if len(found) == 1:
            return found[0]
        return min(set(found), key=lambda model_id: (_negate(specificity(self._match_of[model_id], text)), model_id))


def _negate(score: tuple[int, int]) -> tuple[int, int]:
    return (-score[0], -score[1])


def _is_date(year: str, month: str, day: str) -> bool:
    try:
        date(int(year), int(month), int(day))
    except ValueError:
        return False
    return True


def _bedrock_vendor(name: str) -> str | None:
    """The vendor of a Bedrock model name (`anthropic` of `us.anthropic.claude-...`)."""
    parts = name.split(".")
    if len(parts) > 2 and parts[0] in (*BEDROCK_REGIONS, "regional"):
        parts = parts[1:]
    head = parts[0]
    return head if len(parts) > 1 and head.isalpha() else None


def catalog_entries(data: Mapping[str, Any]) -> tuple[list[Entry], list[AliasEntry], list[str]]:
    """A catalog file (as `importer.read_catalog` reads it) as the resolver's input, with the aliases
    the importer stores for it: the file's, and the bare names of the first-party models."""
    entries = [Entry(m["id"], m["provider"], m["name"], m.get("match")) for m in data["models"]]
    aliases = [AliasEntry(alias, m["id"]) for m in data["models"] for alias in m.get("aliases") or ()]
    aliases += [AliasEntry(m["name"], m["id"]) for m in data["models"] if m["provider"] in FIRST_PARTY]
    return entries, aliases, [p["id"] for p in data["providers"]]
