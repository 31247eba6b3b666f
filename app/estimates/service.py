"""Estimates use `pricing.quote`, the function that prices real charges, so a quote and the charge
for the same usage are the same number."""

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from app import pricing
from app.catalog.model import Catalog, exact
from app.catalog.resolve import bedrock_region
from app.errors import AppError, InvalidRequest, NotFound, error_object
from app.estimates.schemas import Comparison, Estimate, EstimateIn, Funds, Line, Unavailable
from app.ledger import repository as ledger_repository
from app.money import money, subtract
from app.usage import reported


def usage_of(data: EstimateIn) -> pricing.Usage:
    if data.output_tokens is not None and data.max_output_tokens is not None:
        raise InvalidRequest("Give `output_tokens` or `max_output_tokens`, not both", param="max_output_tokens")
    capped = data.output_tokens is None and data.max_output_tokens is not None
    usage, _ = reported.usage_from(
        data,
        output_tokens=data.max_output_tokens if capped else data.output_tokens,
        output_field="max_output_tokens" if capped else "output_tokens",
    )
    return usage


def estimate(
    catalog: Catalog,
    model_ref: str,
    usage: pricing.Usage,
    now: datetime,
    *,
    finance: bool,
    compared: bool = False,
    provider: str | None = None,
    service_tier: str = "default",
    region: str | None = None,
) -> tuple[Estimate, Decimal]:
    model = catalog.require_available(model_ref, provider)
    region = region or bedrock_region(model_ref)
    if compared and model.embedding:
        # Compared with language models, an embedding model simply produces no output.
        usage = replace(usage, output_tokens=0, reasoning_tokens=0)
    quote, price, margin = catalog.quote(model, usage, now, service_tier, region)
    lines = [Line(line.kind, line.tokens, exact(line.rate_credits_per_1m), money(line.credits)) for line in quote.lines]
    view = Estimate(
        model=model.id,
        credits=money(quote.credits),
        price_version=price.id,
        effective_from=price.effective_from.isoformat(),
        tier=quote.tier,
        breakdown=lines,
        service_tier=service_tier,
        region=region,
    )
    if finance:
        view.upstream_cost_usd, view.margin = money(quote.upstream_usd), exact(margin)
    return view, quote.credits


def compare(
    catalog: Catalog,
    models: list[str],
    usage: pricing.Usage,
    now: datetime,
    *,
    finance: bool,
    provider: str | None = None,
    service_tier: str = "default",
    region: str | None = None,
) -> Comparison:
    """The same call on several models, cheapest first; a model that cannot be priced is listed apart."""
    pricing.validate_usage(usage, embedding=False)
    priced, unavailable = [], []
    for ref in dict.fromkeys(models):
        try:
            priced.append(
                estimate(
                    catalog,
                    ref,
                    usage,
                    now,
                    finance=finance,
                    compared=True,
                    provider=provider,
                    service_tier=service_tier,
                    region=region,
                )
            )
        except AppError as error:
            unavailable.append(Unavailable(model=ref, error=error_object(error)))
    priced.sort(key=lambda item: (item[1], item[0].model))
    return Comparison(estimates=[view for view, _ in priced], unavailable=unavailable)


async def add_funds(conn: AsyncConnection, estimates: list[Estimate], account_id: str, now: datetime) -> None:
    """Tell on each estimate whether the account's available credits cover it."""
    row = await ledger_repository.get_account(conn, account_id, now)
    if row is None:
        raise NotFound(f"Account '{account_id}' not found", code="account_not_found", param="account_id")
    available = subtract(row.balance, row.pending)
    for view in estimates:
        view.account = Funds(account_id, money(available), Decimal(view.credits) <= available)
