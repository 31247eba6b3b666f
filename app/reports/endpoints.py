from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import FromQuery, QueryParameter

from app.db import ReadDb
from app.exports import Format, csv_response, to_csv, wants_csv
from app.keys.schemas import Principal
from app.openapi import errors
from app.pagination import DEFAULT_LIMIT, check_limit
from app.reports import service
from app.reports.repository import Attribution
from app.reports.schemas import MONEY_METRICS, TOKEN_METRICS, TrialBalance, TrialBalanceRow, UsageReport

AnyRequest = Request[Principal, str, Any]
From = Annotated[str | None, QueryParameter(name="from", description="A date (midnight UTC) or an RFC 3339 time")]
To = Annotated[str | None, QueryParameter(name="to", description="Exclusive; a date or an RFC 3339 time")]
GroupBy = Annotated[
    list[str] | None,
    QueryParameter(
        description="Any of account, model, provider, day, month, end_user, tag, api_key, in order: repeated "
        "(`group_by=account&group_by=model`) or comma-separated (`group_by=account,model`); "
        "an unknown value is a 400 that names it"
    ),
]


class ReportController(Controller):
    path = "/reports"
    tags = ["reports"]
    opt = {"scope": "ledger:read"}

    @get("/usage", responses=errors(404))
    async def usage_report(
        self,
        request: AnyRequest,
        read_db: ReadDb,
        group_by: GroupBy = None,
        account_id: FromQuery[str | None] = None,
        from_: From = None,
        to: To = None,
        format_: Format = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        end_user: FromQuery[str | None] = None,
        tag: FromQuery[str | None] = None,
        api_key: Annotated[str | None, QueryParameter(description="The id of the API key that reported")] = None,
    ) -> UsageReport:
        """Usage totals grouped by any of account, model, provider, day, month, end_user, tag, api_key
        (`group_by=model,day` or `group_by=model&group_by=day`), in key order, optionally only for one
        `end_user`, `tag` or `api_key`; JSON, a page of `limit` rows at a time with the totals of the whole
        report, or CSV, every row at once. By tag, an event counts once under each of its tags."""
        keys = service.parse_group_by(group_by)
        start, end = service.parse_bound(from_, "from"), service.parse_bound(to, "to")
        csv = wants_csv(request, format_)
        page_size = None if csv else check_limit(limit)
        async with read_db.connect() as conn:
            only = Attribution(end_user=end_user, tag=tag, api_key=api_key)
            report = await service.usage_report(
                conn, keys, request.user.account(account_id), start, end, cursor, page_size, only
            )
        if not csv:
            return report
        metrics = ["events", *TOKEN_METRICS, *MONEY_METRICS, "gross_margin_pct"]
        rows = [[*(getattr(row, k) for k in keys), *(getattr(row, m) for m in metrics)] for row in report.rows]
        if report.unrated.events:
            # Its own line, after the groups: tokens that wait for a price, with no credits yet.
            waiting = report.unrated
            label = ["unrated", *[""] * (len(keys) - 1)] if keys else []
            counts = [waiting.events, *(getattr(waiting, name) for name in TOKEN_METRICS)]
            rows.append([*label, *counts, *[""] * (len(metrics) - len(counts))])
        return csv_response(to_csv([*keys, *metrics], rows), "usage-report.csv")

    @get("/trial-balance", responses=errors(404))
    async def trial_balance(
        self,
        request: AnyRequest,
        read_db: ReadDb,
        account_id: FromQuery[str | None] = None,
        from_: From = None,
        to: To = None,
        format_: Format = None,
    ) -> TrialBalance:
        """Per account for [from, to): opening balance, grants, usage, adjustments, reversals, expirations, closing."""
        start, end = service.parse_bound(from_, "from"), service.parse_bound(to, "to")
        async with read_db.connect() as conn:
            report = await service.trial_balance(conn, request.user.account(account_id), start, end)
        if not wants_csv(request, format_):
            return report
        header = list(TrialBalanceRow.__struct_fields__)
        rows = [[getattr(row, name) for name in header] for row in report.accounts]
        return csv_response(to_csv(header, rows), "trial-balance.csv")
