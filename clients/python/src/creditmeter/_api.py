"""Every operation of the service, written once. Each method builds a `Call` and hands the program that
sends it to `self._run`: `Client._run` runs it to the answer, `AsyncClient._run` returns a coroutine.
So on `AsyncClient` every method below is awaited."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec

from creditmeter._core import Call, Core, Program, body_of, params_of, segment
from creditmeter.models import (
    Account,
    AccountPage,
    Adjustment,
    Alias,
    AliasList,
    ApiKey,
    ApiKeyPage,
    AuditPage,
    Authorization,
    Balance,
    BatchOut,
    CatalogModel,
    Comparison,
    Delivery,
    DeliveryPage,
    Envelope,
    Estimate,
    Grant,
    GrantPage,
    GrantSchedule,
    GrantScheduleList,
    Health,
    ImportResult,
    LedgerPage,
    Margin,
    MarginList,
    ModelList,
    ModelResolution,
    OllamaModels,
    OpenAIModel,
    OpenAIModelList,
    OpenRouterEmbeddings,
    OpenRouterModels,
    PriceVersion,
    PriceVersionPage,
    Provider,
    ProviderList,
    Reversal,
    SpendLimit,
    SpendLimitList,
    SyncResult,
    TrialBalance,
    UsageEvent,
    UsageEventIn,
    UsagePage,
    UsageReport,
    Webhook,
    WebhookPage,
)
from creditmeter.providers import read_response

Amount = Decimal | int | str
Scope = Literal["catalog:read", "usage:write", "ledger:read", "admin"]


def exact(value: Amount) -> Decimal | int | str:
    """Credits are exact: a float has already lost digits, so it is refused rather than sent."""
    if isinstance(value, float | bool) or not isinstance(value, Decimal | int | str):
        raise TypeError(f"An amount must be a Decimal, an int or a decimal string, not {type(value).__name__}")
    return value


def idempotency(key: str | None) -> dict[str, str]:
    """The `Idempotency-Key` header, made up when the caller gives none, so that retries never do it twice."""
    return {"Idempotency-Key": key or f"idem_{uuid.uuid4().hex}"}


def event_of(event: UsageEventIn | dict[str, Any] | None, fields: dict[str, Any]) -> UsageEventIn:
    if event is None:
        return UsageEventIn(**fields)
    if fields:
        raise TypeError("Give an event or its fields, not both")
    if isinstance(event, UsageEventIn):
        return event
    return msgspec.convert(event, UsageEventIn)


class Operations:
    _core: Core

    def _run(self, program: Program) -> Any:
        raise NotImplementedError

    def _call(self, call: Call) -> Any:
        return self._run(self._core.exchange(call))

    def _data(self, call: Call[Envelope]) -> Program:
        answer = yield from self._core.exchange(call)
        return answer.data

    # Service

    def health(self) -> Health:
        """Liveness; needs no key."""
        return self._call(Call("GET", "/health", Health))

    def ready(self) -> Health:
        """Readiness: the service and its database answer (503, raised, otherwise)."""
        return self._call(Call("GET", "/ready", Health))

    def metrics(self) -> str:
        """The Prometheus metrics, as text."""
        return self._call(Call("GET", "/metrics", str))

    # Usage

    def record_usage(self, event: UsageEventIn | dict[str, Any] | None = None, /, **fields: Any) -> UsageEvent:
        """Record one usage event (the fields of `UsageEventIn`, or one). Without `event_id`, one is made up
        here, so a retry of this call is recognised as the same event and never charged twice."""
        return self._call(Call("POST", "/usage", UsageEvent, body=event_of(event, fields)))

    def record_batch(self, events: Sequence[UsageEventIn | dict[str, Any]]) -> BatchOut:
        """Record up to 1000 events at once; the answer has a result per event (`created`, `unrated`,
        `duplicate` or `error`). Events without an `event_id` get one, kept for every retry."""
        body = {"events": [event_of(event, {}) for event in events]}
        return self._call(Call("POST", "/usage/batch", BatchOut, body=body))

    def record_response(
        self,
        response: Any,
        *,
        account_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        **fields: Any,
    ) -> UsageEvent:
        """Record the usage of an OpenAI (chat completions or Responses), Anthropic, Gemini or Bedrock Converse
        response (the SDK's object or its JSON): its model string and its usage object as the provider sent it.
        Bedrock Converse responses name no model: pass `model=`. Other event fields (`event_id`, `metadata`,
        `authorization_id`, ...) as keywords."""
        return self.record_usage(response_event(response, account_id, provider, model, fields))

    def list_usage(
        self,
        *,
        account_id: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        status: Literal["charged", "unrated"] | None = None,
        from_: datetime | None = None,
        to: datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> UsagePage:
        """Usage events, oldest first, in pages; pass `next_cursor` as `cursor` for the next one."""
        params = params_of(
            account_id=account_id,
            model=model,
            provider=provider,
            status=status,
            from_=from_,
            to=to,
            cursor=cursor,
            limit=limit,
        )
        return self._call(Call("GET", "/usage", UsagePage, params=params))

    # Estimates and holds

    def estimate(self, model: str, **call: Any) -> Estimate:
        """The cost of a call without recording it: `input_tokens`, `output_tokens` or `max_output_tokens`,
        the cache and reasoning parts, or `usage`; `provider`, `service_tier`, `region`; with `account_id`,
        whether the account's available credits cover it."""
        return self._call(Call("POST", "/estimate", Estimate, body=body_of(model=model, **call)))

    def compare(self, models: Sequence[str], **call: Any) -> Comparison:
        """The same call on several models (up to 50), cheapest first."""
        return self._call(Call("POST", "/estimate", Comparison, body=body_of(models=list(models), **call)))

    def authorize(
        self,
        account_id: str | None,
        model: str,
        *,
        input_tokens: int | None = None,
        max_output_tokens: int | None = None,
        ttl_seconds: int | None = None,
        idempotency_key: str | None = None,
        **call: Any,
    ) -> Authorization:
        """Hold the worst-case cost of a call (`402 InsufficientCreditsError` when it does not fit). Settle it with
        the usage event naming it (`authorization_id`), or `release` it. See `hold` for both in one block."""
        body = body_of(
            account_id=account_id,
            model=model,
            input_tokens=input_tokens,
            max_output_tokens=max_output_tokens,
            ttl_seconds=ttl_seconds,
            **call,
        )
        call_ = Call("POST", "/authorizations", Authorization, body=body, headers=idempotency(idempotency_key))
        return self._call(call_)

    def release(self, authorization_id: str) -> Authorization:
        """Free a pending hold early; releasing it again answers the same."""
        return self._call(Call("POST", f"/authorizations/{segment(authorization_id)}/release", Authorization))

    def get_authorization(self, authorization_id: str) -> Authorization:
        return self._call(Call("GET", f"/authorizations/{segment(authorization_id)}", Authorization))

    # Accounts and the ledger

    def create_account(self, name: str, *, id: str | None = None, overdraft_limit: Amount | None = None) -> Account:
        """Create an account (admin); its `id` is generated when not given."""
        limit = None if overdraft_limit is None else exact(overdraft_limit)
        body = body_of(name=name, id=id, overdraft_limit=limit)
        # A resend after a lost answer would meet its own account (409) or make a second one.
        return self._call(Call("POST", "/accounts", Account, body=body, idempotent=False))

    def list_accounts(self, *, cursor: str | None = None, limit: int | None = None) -> AccountPage:
        return self._call(Call("GET", "/accounts", AccountPage, params=params_of(cursor=cursor, limit=limit)))

    def get_account(self, account_id: str) -> Account:
        return self._call(Call("GET", f"/accounts/{segment(account_id)}", Account))

    def get_balance(self, account_id: str) -> Balance:
        """Balance, credits held by pending holds, and what is available."""
        return self._call(Call("GET", f"/accounts/{segment(account_id)}/balance", Balance))

    def create_grant(
        self,
        account_id: str,
        amount: Amount,
        *,
        description: str | None = None,
        expires_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Grant:
        """Add credits to an account (admin), optionally expiring."""
        body = body_of(amount=exact(amount), description=description, expires_at=expires_at)
        path = f"/accounts/{segment(account_id)}/grants"
        return self._call(Call("POST", path, Grant, body=body, headers=idempotency(idempotency_key)))

    def list_grants(self, account_id: str) -> GrantPage:
        """The account's grants with what is left of each."""
        return self._call(Call("GET", f"/accounts/{segment(account_id)}/grants", GrantPage))

    def set_low_balance_threshold(self, account_id: str, threshold: Amount | None) -> Account:
        """The account's line for the `balance.low` webhook, in credits (None: off) (admin)."""
        body = {"low_balance_threshold": None if threshold is None else exact(threshold)}
        return self._call(Call("PATCH", f"/accounts/{segment(account_id)}", Account, body=body))

    # Spend limits and recurring grants

    def create_limit(
        self,
        account_id: str,
        scope: Literal["account", "end_user", "tag", "api_key"],
        amount: Amount,
        period: Literal["day", "week", "month", "none"],
        *,
        value: str | None = None,
    ) -> SpendLimit:
        """Limit the account's spend, or one end user's, tag's or key's (`value`), per period (admin)."""
        body = body_of(scope=scope, amount=exact(amount), period=period, value=value)
        path = f"/accounts/{segment(account_id)}/limits"
        # Resent after it worked, it would answer 409.
        return self._call(Call("POST", path, SpendLimit, body=body, idempotent=False))

    def list_limits(self, account_id: str) -> SpendLimitList:
        return self._call(Call("GET", f"/accounts/{segment(account_id)}/limits", SpendLimitList))

    def delete_limit(self, account_id: str, limit_id: str) -> None:
        path = f"/accounts/{segment(account_id)}/limits/{segment(limit_id)}"
        return self._call(Call("DELETE", path, None, idempotent=False))

    def create_grant_schedule(
        self,
        account_id: str,
        amount: Amount,
        period: Literal["day", "week", "month"],
        *,
        rollover: Literal["none", "all", "capped"] = "none",
        rollover_cap: Amount | None = None,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        grant_ttl_seconds: int | None = None,
        description: str | None = None,
    ) -> GrantSchedule:
        """A recurring grant, issued as ordinary grants once per period (admin)."""
        body = body_of(
            amount=exact(amount), period=period, rollover=rollover,
            rollover_cap=None if rollover_cap is None else exact(rollover_cap), starts_at=starts_at, ends_at=ends_at,
            grant_ttl_seconds=grant_ttl_seconds, description=description,
        )  # fmt: skip
        path = f"/accounts/{segment(account_id)}/grant-schedules"
        # Resent after it worked, it would make a second schedule.
        return self._call(Call("POST", path, GrantSchedule, body=body, idempotent=False))

    def list_grant_schedules(self, account_id: str) -> GrantScheduleList:
        return self._call(Call("GET", f"/accounts/{segment(account_id)}/grant-schedules", GrantScheduleList))

    def get_grant_schedule(self, account_id: str, schedule_id: str) -> GrantSchedule:
        path = f"/accounts/{segment(account_id)}/grant-schedules/{segment(schedule_id)}"
        return self._call(Call("GET", path, GrantSchedule))

    def end_grant_schedule(self, account_id: str, schedule_id: str) -> None:
        """No grant after now; the grants made stay (admin)."""
        path = f"/accounts/{segment(account_id)}/grant-schedules/{segment(schedule_id)}"
        return self._call(Call("DELETE", path, None, idempotent=False))

    # Webhooks (admin)

    def create_webhook(self, url: str, events: Sequence[str], *, description: str | None = None) -> Webhook:
        """Register an endpoint; the answer's `secret` (Standard Webhooks) is shown this once."""
        body = body_of(url=url, events=list(events), description=description)
        return self._call(Call("POST", "/webhooks", Webhook, body=body, idempotent=False))

    def list_webhooks(self, *, cursor: str | None = None, limit: int | None = None) -> WebhookPage:
        return self._call(Call("GET", "/webhooks", WebhookPage, params=params_of(cursor=cursor, limit=limit)))

    def get_webhook(self, webhook_id: str) -> Webhook:
        return self._call(Call("GET", f"/webhooks/{segment(webhook_id)}", Webhook))

    def update_webhook(self, webhook_id: str, **changes: Any) -> Webhook:
        """Change `url`, `events`, `description` or `disabled`."""
        return self._call(Call("PATCH", f"/webhooks/{segment(webhook_id)}", Webhook, body=dict(changes)))

    def delete_webhook(self, webhook_id: str) -> Webhook:
        return self._call(Call("DELETE", f"/webhooks/{segment(webhook_id)}", Webhook, idempotent=False))

    def list_deliveries(
        self,
        webhook_id: str,
        *,
        status: Literal["pending", "succeeded", "failed"] | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> DeliveryPage:
        params = params_of(status=status, cursor=cursor, limit=limit)
        return self._call(Call("GET", f"/webhooks/{segment(webhook_id)}/deliveries", DeliveryPage, params=params))

    def retry_delivery(self, webhook_id: str, delivery_id: int) -> Delivery:
        """Send a failed delivery again, with a fresh day of retries."""
        path = f"/webhooks/{segment(webhook_id)}/deliveries/{int(delivery_id)}/retry"
        return self._call(Call("POST", path, Delivery, idempotent=False))

    def create_adjustment(
        self, account_id: str, amount: Amount, reason: str, *, idempotency_key: str | None = None
    ) -> Adjustment:
        """Credit (positive) or debit (negative) an account, with a reason (admin)."""
        body = {"amount": exact(amount), "reason": reason}
        path = f"/accounts/{segment(account_id)}/adjustments"
        return self._call(Call("POST", path, Adjustment, body=body, headers=idempotency(idempotency_key)))

    def create_reversal(self, account_id: str, event_id: str, reason: str) -> Reversal:
        """Give back what a usage event was charged (admin); reversing it again replays the first answer."""
        body = {"event_id": event_id, "reason": reason}
        return self._call(Call("POST", f"/accounts/{segment(account_id)}/reversals", Reversal, body=body))

    def list_ledger(
        self,
        account_id: str,
        *,
        kind: Sequence[str] | None = None,
        from_: datetime | None = None,
        to: datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> LedgerPage:
        """Ledger entries in posting order, each with `balance_after`."""
        params = params_of(kind=list(kind or []), from_=from_, to=to, cursor=cursor, limit=limit)
        return self._call(Call("GET", f"/accounts/{segment(account_id)}/ledger", LedgerPage, params=params))

    def export_ledger(
        self,
        account_id: str,
        *,
        kind: Sequence[str] | None = None,
        from_: datetime | None = None,
        to: datetime | None = None,
    ) -> str:
        """Every matching ledger entry as CSV text."""
        params = params_of(kind=list(kind or []), from_=from_, to=to, format="csv")
        return self._call(Call("GET", f"/accounts/{segment(account_id)}/ledger", str, params=params))

    # Reports

    def usage_report(
        self,
        *,
        group_by: Sequence[str] = (),
        account_id: str | None = None,
        from_: datetime | str | None = None,
        to: datetime | str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        end_user: str | None = None,
        tag: str | None = None,
        api_key: str | None = None,
    ) -> UsageReport:
        """Usage totals grouped by any of `account`, `model`, `provider`, `day`, `month`, `end_user`, `tag`,
        `api_key`, in that order of keys; only for one `end_user`, `tag` or `api_key` (its id) when given."""
        params = params_of(
            group_by=list(group_by), account_id=account_id, from_=from_, to=to, cursor=cursor, limit=limit,
            end_user=end_user, tag=tag, api_key=api_key,
        )  # fmt: skip
        return self._call(Call("GET", "/reports/usage", UsageReport, params=params))

    def export_usage_report(
        self,
        *,
        group_by: Sequence[str] = (),
        account_id: str | None = None,
        from_: datetime | str | None = None,
        to: datetime | str | None = None,
        end_user: str | None = None,
        tag: str | None = None,
        api_key: str | None = None,
    ) -> str:
        """The whole usage report as CSV text."""
        params = params_of(
            group_by=list(group_by), account_id=account_id, from_=from_, to=to, format="csv", end_user=end_user,
            tag=tag, api_key=api_key,
        )  # fmt: skip
        return self._call(Call("GET", "/reports/usage", str, params=params))

    def trial_balance(
        self, *, account_id: str | None = None, from_: datetime | str | None = None, to: datetime | str | None = None
    ) -> TrialBalance:
        """Per account for [from, to): opening, grants, usage, adjustments, reversals, expirations, closing."""
        params = params_of(account_id=account_id, from_=from_, to=to)
        return self._call(Call("GET", "/reports/trial-balance", TrialBalance, params=params))

    # Catalog

    def list_models(
        self,
        *,
        provider: str | None = None,
        type: Literal["language", "embedding"] | None = None,
        supports_tools: bool | None = None,
        supports_vision: bool | None = None,
    ) -> ModelList:
        """The catalog with credit prices (margin included)."""
        params = params_of(provider=provider, type=type, supports_tools=supports_tools, supports_vision=supports_vision)
        return self._call(Call("GET", "/models", ModelList, params=params))

    def get_model(self, model: str, *, provider: str | None = None) -> CatalogModel:
        """One model by id (`openai/gpt-4o`) or by any name that resolves to it (then `root` is its id)."""
        return self._call(Call("GET", f"/models/{segment(model)}", CatalogModel, params=params_of(provider=provider)))

    def list_providers(self) -> ProviderList:
        return self._call(Call("GET", "/models/providers", ProviderList))

    def list_embedding_models(self) -> ModelList:
        return self._call(Call("GET", "/models/embedding", ModelList))

    def get_embedding_model(self, model: str) -> CatalogModel:
        return self._call(Call("GET", f"/models/embedding/{segment(model)}", CatalogModel))

    def resolve_model(self, model: str, *, provider: str | None = None) -> ModelResolution:
        """Which catalog model a reported model string names, and by which rule."""
        params = params_of(model=model, provider=provider)
        return self._call(Call("GET", "/models/resolve", ModelResolution, params=params))

    def list_openai_models(self) -> OpenAIModelList:
        """The OpenAI-compatible list (`GET /v1/models`)."""
        return self._call(Call("GET", "/v1/models", OpenAIModelList))

    def get_openai_model(self, model: str, *, provider: str | None = None) -> OpenAIModel:
        params = params_of(provider=provider)
        return self._call(Call("GET", f"/v1/models/{segment(model)}", OpenAIModel, params=params))

    # Catalog administration (admin; price history and margins with ledger:read, aliases with catalog:read)

    def create_provider(self, id: str, name: str, *, enabled: bool = True) -> Provider:
        body = {"id": id, "name": name, "enabled": enabled}
        # A second attempt after a lost answer would meet its own provider (409).
        return self._call(Call("POST", "/catalog/providers", Provider, body=body, idempotent=False))

    def update_provider(self, provider_id: str, *, name: str | None = None, enabled: bool | None = None) -> Provider:
        """Rename a provider, or enable or disable it (a disabled one's models answer `provider_not_configured`)."""
        body = body_of(name=name, enabled=enabled)
        return self._call(Call("PATCH", f"/catalog/providers/{segment(provider_id)}", Provider, body=body))

    def upsert_model(
        self, provider: str, name: str, type: Literal["language", "embedding"] = "language", **fields: Any
    ) -> CatalogModel:
        """Create or update a model's metadata (`context_window`, `supports_tools`, `aliases`, ...)."""
        body = body_of(provider=provider, name=name, type=type, **fields)
        return self._call(Call("PUT", "/catalog/models", CatalogModel, body=body))

    def add_price(
        self,
        model: str,
        *,
        input: Amount | None,
        output: Amount | None = None,
        cached_input: Amount | None = None,
        cache_write: Amount | None = None,
        cache_write_1h: Amount | None = None,
        per_request: Amount | None = None,
        tiers: Sequence[dict[str, Any]] | None = None,
        variants: Sequence[dict[str, Any]] | None = None,
        effective_from: datetime | None = None,
        source: str | None = None,
    ) -> PriceVersion:
        """Add a price version: upstream USD per 1M tokens, effective now or from `effective_from`."""
        rates = {
            "output": output,
            "cached_input": cached_input,
            "cache_write": cache_write,
            "cache_write_1h": cache_write_1h,
            "per_request": per_request,
        }
        body = {"model": model, "input": None if input is None else exact(input)}
        body |= body_of(**{name: exact(rate) for name, rate in rates.items() if rate is not None})
        body |= body_of(tiers=tiers, variants=variants, effective_from=effective_from, source=source)
        # Each attempt would add a version.
        return self._call(Call("POST", "/catalog/prices", PriceVersion, body=body, idempotent=False))

    def price_history(self, model: str) -> PriceVersionPage:
        """Every price version of a model, oldest first."""
        return self._call(Call("GET", "/catalog/prices", PriceVersionPage, params=params_of(model=model)))

    def set_margin(
        self,
        scope: Literal["provider", "model"],
        target: str,
        margin: Amount | None,
        *,
        effective_from: datetime | None = None,
    ) -> Margin:
        """Override the default margin for a provider or a model (None: back to the default) from now on."""
        body = {"scope": scope, "target": target, "margin": None if margin is None else exact(margin)}
        body |= body_of(effective_from=effective_from)
        return self._call(Call("PUT", "/catalog/margins", Margin, body=body, idempotent=False))

    def list_margins(self) -> MarginList:
        return self._call(Call("GET", "/catalog/margins", MarginList))

    def add_alias(self, alias: str, model: str, *, provider: str | None = None) -> Alias:
        """Name a model by a string only the operator knows; giving the same alias again answers the same."""
        body = body_of(alias=alias, model=model, provider=provider)
        return self._call(Call("POST", "/catalog/aliases", Alias, body=body))

    def list_aliases(
        self, *, model: str | None = None, source: Literal["catalog", "operator"] | None = None
    ) -> AliasList:
        return self._call(Call("GET", "/catalog/aliases", AliasList, params=params_of(model=model, source=source)))

    def delete_alias(self, alias: str, *, provider: str | None = None) -> None:
        path = f"/catalog/aliases/{segment(alias)}"
        # Resent after it worked, it would answer 404.
        return self._call(Call("DELETE", path, None, params=params_of(provider=provider), idempotent=False))

    def import_catalog(self) -> ImportResult:
        """Load the bundled default catalog: new models and changed prices are added, nothing is rewritten."""
        return self._call(Call("POST", "/catalog/import", ImportResult))

    def sync_catalog(
        self,
        *,
        sources: Sequence[str] | None = None,
        dry_run: bool = False,
        curated: bool = False,
        litellm_url: str | None = None,
    ) -> SyncResult:
        """Sync from upstream sources (`openrouter`, `ollama`, `litellm`, `genai-prices`); `dry_run`: the diff only."""
        body = body_of(sources=list(sources) if sources else None, dry_run=dry_run, curated=curated)
        body |= body_of(litellm_url=litellm_url)
        return self._call(Call("POST", "/catalog/sync", SyncResult, body=body))

    # Model pickers (catalog:read)

    def openrouter_models(self, *, curated: bool = False) -> OpenRouterModels:
        call = Call("GET", "/api/models/openrouter", Envelope[OpenRouterModels], params=params_of(curated=curated))
        return self._run(self._data(call))

    def openrouter_embeddings(self, *, curated: bool = False) -> OpenRouterEmbeddings:
        params = params_of(curated=curated)
        call = Call("GET", "/api/models/openrouter/embeddings", Envelope[OpenRouterEmbeddings], params=params)
        return self._run(self._data(call))

    def ollama_models(self) -> OllamaModels:
        return self._run(self._data(Call("GET", "/api/models/ollama", Envelope[OllamaModels])))

    # API keys

    def create_api_key(
        self,
        name: str,
        scopes: Sequence[Scope],
        *,
        account_id: str | None = None,
        expires_at: datetime | None = None,
    ) -> ApiKey:
        """Create a key (admin); its secret is in `key`, in this answer only."""
        body = body_of(name=name, scopes=list(scopes), account_id=account_id, expires_at=expires_at)
        # Resent after a lost answer, it would make a second key.
        return self._call(Call("POST", "/api-keys", ApiKey, body=body, idempotent=False))

    def list_api_keys(
        self, *, account_id: str | None = None, cursor: str | None = None, limit: int | None = None
    ) -> ApiKeyPage:
        params = params_of(account_id=account_id, cursor=cursor, limit=limit)
        return self._call(Call("GET", "/api-keys", ApiKeyPage, params=params))

    def revoke_api_key(self, key_id: str) -> ApiKey:
        return self._call(Call("DELETE", f"/api-keys/{segment(key_id)}", ApiKey))

    def api_key_audit(self, *, cursor: str | None = None, limit: int | None = None) -> AuditPage:
        """Who created and revoked which key, oldest first."""
        return self._call(Call("GET", "/api-keys/audit", AuditPage, params=params_of(cursor=cursor, limit=limit)))


def response_event(
    response: Any, account_id: str | None, provider: str | None, model: str | None, fields: dict[str, Any]
) -> UsageEventIn:
    reported = read_response(response, provider=provider, model=model)
    if reported.service_tier is not None:
        fields.setdefault("service_tier", reported.service_tier)
    return UsageEventIn(
        account_id=account_id,
        provider=provider,
        model=reported.model,
        usage=reported.usage,
        usage_format=reported.usage_format,
        **fields,
    )


class HoldBase:
    """A hold for the length of a block: created on entering, settled by `settle` with the actual usage,
    released when the block raises or ends without settling. `Hold` and `AsyncHold` add the entering
    and leaving."""

    def __init__(self, client: Operations, account_id: str | None, model: str, call: dict[str, Any]) -> None:
        self._client = client
        self.account_id = account_id
        self.model = model
        self.call = call
        self.authorization: Authorization | None = None
        self.event: UsageEvent | None = None

    @property
    def id(self) -> str:
        if self.authorization is None:
            raise RuntimeError("The hold is not placed yet: enter its block first")
        return self.authorization.id

    @property
    def settled(self) -> bool:
        return self.event is not None

    def settle(self, response: Any = None, /, **fields: Any) -> Any:
        """Charge the actual usage and free the rest of the hold: token fields (`input_tokens`,
        `output_tokens`, ...), a provider `usage` object, or the provider's response itself. Returns the
        recorded `UsageEvent` (awaitable on `AsyncClient`)."""
        if self.event is not None:
            raise RuntimeError(f"Hold {self.id} is already settled by event {self.event.event_id}")
        call = {
            "authorization_id": self.id,
            "service_tier": self.call.get("service_tier"),
            "region": self.call.get("region"),
        }
        common = {name: value for name, value in call.items() if value is not None}
        provider = self.call.get("provider")
        if response is not None:
            model = fields.pop("model", None)
            event = response_event(response, self.account_id, provider, model, common | fields)
        else:
            event = UsageEventIn(
                **({"account_id": self.account_id, "model": self.model, "provider": provider} | common | fields)
            )
        return self._client._run(self._settle(event))

    def _settle(self, event: UsageEventIn) -> Program[UsageEvent]:
        self.event = yield from self._client._core.exchange(Call("POST", "/usage", UsageEvent, body=event))
        return self.event

    def _place(self) -> Program[Authorization]:
        call = Call(
            "POST",
            "/authorizations",
            Authorization,
            body=body_of(account_id=self.account_id, model=self.model, **self.call),
            headers=idempotency(None),
        )
        self.authorization = yield from self._client._core.exchange(call)
        return self.authorization

    def _release(self) -> Program[Authorization]:
        call = Call("POST", f"/authorizations/{segment(self.id)}/release", Authorization)
        self.authorization = yield from self._client._core.exchange(call)
        return self.authorization
