"""`/dashboard`: pages for finance and operators, signed in with an API key and limited to what that
key may read, as the API would limit it.

The key is kept in a session cookie (HttpOnly, SameSite=Strict, Secure over https, for /dashboard only)
and checked on every page as the API checks it, so a revoked key is signed out at once. Forms carry
a token that must match a cookie of their own (double submit): another site can make a browser post,
not read the cookie to copy it. Everything the pages show comes from the services the API uses."""

import hmac
import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery, QueryParameter
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncEngine

from app.catalog.model import Catalog
from app.catalog.views import model_view
from app.clock import Clock
from app.dashboard.service import Point, bar_chart, line_chart, matches
from app.errors import AppError, Forbidden, NotFound
from app.exports import csv_response, to_csv
from app.keys.auth import authenticate
from app.keys.schemas import Principal
from app.ledger import repository as ledger_repository
from app.ledger import service as ledger_service
from app.ledger.schemas import LedgerEntry
from app.limits import service as limits_service
from app.pagination import MAX_LIMIT
from app.reports import service as report_service
from app.reports.schemas import MONEY_METRICS, TOKEN_METRICS
from app.usage import repository as usage_repository
from app.usage import service as usage_service
from app.webhooks import repository as webhooks_repository
from app.webhooks import service as webhooks_service

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
SESSION = "cm_session"
CSRF = "cm_csrf"
PATH = "/dashboard"
ACCOUNTS_PAGE = 100  # accounts a page; the search runs in the database over all of them
REPORT_GROUPS = ("day", "model", "provider", "account")


class SignedOut(Exception):
    """No valid key in the session: the page sends the browser to sign in."""


def cookie(request: Request, name: str, value: str, *, httponly: bool = True) -> Cookie:
    return Cookie(
        key=name, value=value, path=PATH, httponly=httponly, samesite="strict",
        secure=request.url.scheme == "https", max_age=12 * 3600,
    )  # fmt: skip


async def principal_of(request: Request) -> Principal:
    state = request.app.state
    try:
        return await authenticate(state.key_cache, state.pool, request.cookies.get(SESSION), state.clock.now())
    except AppError:
        raise SignedOut from None


def check_csrf(request: Request, token: str | None) -> None:
    expected = request.cookies.get(CSRF)
    if not expected or not token or not hmac.compare_digest(expected, token):
        raise Forbidden("The form has expired or did not come from this dashboard; reload it", code="csrf_failed")


def page(request: Request, template: str, principal: Principal | None, **context: Any) -> Template:
    csrf = request.cookies.get(CSRF) or secrets.token_urlsafe(24)
    response = Template(
        template_name=template,
        context={"principal": principal, "csrf": csrf, "finance": principal is not None and principal.is_finance,
                 "admin": principal is not None and principal.has("admin"), **context},
    )  # fmt: skip
    if request.cookies.get(CSRF) != csrf:
        response.cookies.append(cookie(request, CSRF, csrf))
    return response


def lacks(request: Request, principal: Principal, scope: str) -> Template | None:
    if principal.has(scope):
        return None
    return page(request, "message.html", principal, title="Not for this key",
                message=f"This API key lacks the `{scope}` scope this page needs.")  # fmt: skip


def signed_out_handler(request: Request, exc: SignedOut) -> Response:
    return Redirect(f"{PATH}/sign-in", status_code=303)


def bound(raw: str | None, name: str) -> datetime | None:
    return report_service.parse_bound(raw or None, name)


class DashboardController(Controller):
    path = PATH
    include_in_schema = False
    exception_handlers = {SignedOut: signed_out_handler}

    @get("/sign-in")
    async def sign_in_page(self, request: Request) -> Template:
        return page(request, "sign_in.html", None, error=None)

    @post("/sign-in", status_code=303)
    async def sign_in(self, request: Request, data: Form) -> Response:
        check_csrf(request, data.get("csrf"))
        state = request.app.state
        key = (data.get("key") or "").strip()
        try:
            await authenticate(state.key_cache, state.pool, key, state.clock.now())
        except AppError as exc:
            response = page(request, "sign_in.html", None, error=exc.message)
            response.status_code = 401
            return response
        response = Redirect(PATH, status_code=303)
        response.cookies.append(cookie(request, SESSION, key))
        return response

    @post("/sign-out", status_code=303)
    async def sign_out(self, request: Request, data: Form) -> Response:
        check_csrf(request, data.get("csrf"))
        response = Redirect(f"{PATH}/sign-in", status_code=303)
        response.delete_cookie(SESSION, path=PATH)
        return response

    @get("/")
    async def accounts(
        self,
        request: Request,
        clock: NamedDependency[Clock],
        read_db: NamedDependency[AsyncEngine],
        q: FromQuery[str] = "",
        after: FromQuery[str | None] = None,
    ) -> Response:
        principal = await principal_of(request)
        if principal.account_id is not None:
            return Redirect(f"{PATH}/accounts/{principal.account_id}", status_code=303)
        if refused := lacks(request, principal, "ledger:read"):
            return refused
        async with read_db.connect() as conn:
            rows = await ledger_repository.list_accounts(
                conn, only=None, after=after, limit=ACCOUNTS_PAGE + 1, now=clock.now(), search=q.strip()
            )
        found = [ledger_service.to_account(row) for row in rows[:ACCOUNTS_PAGE]]
        following = found[-1].id if len(rows) > ACCOUNTS_PAGE else None
        return page(request, "accounts.html", principal, accounts=found, q=q, after=after, following=following)

    @get("/accounts/{account_id:str}")
    async def account(
        self,
        request: Request,
        clock: NamedDependency[Clock],
        read_db: NamedDependency[AsyncEngine],
        pool: NamedDependency[asyncpg.Pool],
        account_id: FromPath[str],
    ) -> Template:
        principal = await principal_of(request)
        if refused := lacks(request, principal, "ledger:read"):
            return refused
        now = clock.now()
        account_id = principal.account(account_id)
        async with read_db.connect() as conn:
            account = await ledger_service.get_account(conn, account_id, now)
            entries = [
                ledger_service.entry_view(row)
                for row in await ledger_repository.list_entries(
                    conn, account_id=account_id, kinds=None, start=None, end=None, after=None, limit=None
                )
            ]
            grants = [
                ledger_service.grant_view(row._mapping) for row in await ledger_repository.list_grants(conn, account_id)
            ]
            by_day = await report_service.usage_report(conn, ["day"], account_id, now - timedelta(days=30), None)
            by_model = await report_service.usage_report(conn, ["model"], account_id, None, None)
        async with pool.acquire() as conn:
            holds = await ledger_repository.holds_of(conn, account_id, now)
            limits = await limits_service.list_for(conn, account_id, now)
        balance_points = [Point(e.created_at.strftime("%m-%d %H:%M"), Decimal(e.balance_after)) for e in entries]
        charts = {
            "balance": line_chart(balance_points, "Balance after each ledger entry"),
            "days": bar_chart([Point(str(r.day), Decimal(r.credits)) for r in by_day.rows], "Credits by day"),
            "models": bar_chart([Point(r.model, Decimal(r.credits)) for r in by_model.rows], "Credits by model"),
        }
        return page(request, "account.html", principal, account=account, entries=entries[-50:],
                    entry_count=len(entries), grants=grants, holds=holds, limits=limits, charts=charts,
                    by_model=by_model.rows)  # fmt: skip

    @get("/accounts/{account_id:str}/ledger.csv")
    async def ledger_csv(
        self, request: Request, clock: NamedDependency[Clock], read_db: NamedDependency[AsyncEngine],
        account_id: FromPath[str],
    ) -> Response:  # fmt: skip
        principal = await principal_of(request)
        if not principal.has("ledger:read"):
            raise NotFound(f"Account '{account_id}' not found", code="account_not_found")
        account_id = principal.account(account_id)
        async with read_db.connect() as conn:
            account = await ledger_service.get_account(conn, account_id, clock.now())
            rows = await ledger_repository.list_entries(
                conn, account_id=account.id, kinds=None, start=None, end=None, after=None, limit=None
            )
        header = list(LedgerEntry.__struct_fields__)
        entries = [ledger_service.entry_view(row) for row in rows]
        return csv_response(
            to_csv(header, [[getattr(e, n) for n in header] for e in entries]), f"ledger-{account.id}.csv"
        )

    @get("/catalog")
    async def catalog(
        self, request: Request, clock: NamedDependency[Clock], catalog: NamedDependency[Catalog], q: FromQuery[str] = ""
    ) -> Template:
        principal = await principal_of(request)
        if refused := lacks(request, principal, "catalog:read"):
            return refused
        now = clock.now()
        models = [
            model_view(catalog, model, now, principal.is_finance)
            for model in sorted(catalog.models.values(), key=lambda m: m.id)
            if matches(q, model.id, model.row.display_name, *model.aliases)
        ]
        return page(request, "catalog.html", principal, models=models[:500], total=len(models), q=q)

    @get("/reports")
    async def reports(
        self,
        request: Request,
        read_db: NamedDependency[AsyncEngine],
        group_by: FromQuery[str] = "day",
        from_: Annotated[str | None, QueryParameter(name="from")] = None,
        to: FromQuery[str | None] = None,
    ) -> Template:
        principal = await principal_of(request)
        if refused := lacks(request, principal, "ledger:read"):
            return refused
        group = group_by if group_by in REPORT_GROUPS else "day"
        start, end = bound(from_, "from"), bound(to, "to")
        async with read_db.connect() as conn:
            report = await report_service.usage_report(conn, [group], principal.account(None), start, end)
        points = [Point(str(getattr(r, group)), Decimal(r.credits_usd)) for r in report.rows]
        return page(request, "reports.html", principal, report=report, group=group, groups=REPORT_GROUPS,
                    chart=bar_chart(points, f"Revenue (USD) by {group}"), from_=from_ or "", to=to or "")  # fmt: skip

    @get("/reports.csv")
    async def reports_csv(
        self,
        request: Request,
        read_db: NamedDependency[AsyncEngine],
        group_by: FromQuery[str] = "day",
        from_: Annotated[str | None, QueryParameter(name="from")] = None,
        to: FromQuery[str | None] = None,
    ) -> Response:
        principal = await principal_of(request)
        if not principal.has("ledger:read"):
            raise NotFound("Report not found")
        group = group_by if group_by in REPORT_GROUPS else "day"
        async with read_db.connect() as conn:
            report = await report_service.usage_report(
                conn, [group], principal.account(None), bound(from_, "from"), bound(to, "to")
            )
        metrics = ["events", *TOKEN_METRICS, *MONEY_METRICS, "gross_margin_pct"]
        rows = [[getattr(r, group), *(getattr(r, m) for m in metrics)] for r in report.rows]
        return csv_response(to_csv([group, *metrics], rows), f"report-by-{group}.csv")

    @get("/unrated")
    async def unrated(self, request: Request, read_db: NamedDependency[AsyncEngine]) -> Template:
        principal = await principal_of(request)
        if refused := lacks(request, principal, "ledger:read"):
            return refused
        async with read_db.connect() as conn:
            rows = await usage_repository.list_events(
                conn, account_id=principal.account(None), model_id=None, provider=None, status="unrated",
                start=None, end=None, after=None, limit=MAX_LIMIT,
            )  # fmt: skip
        events = [usage_service.stored_view(row._mapping) for row in rows]
        return page(request, "unrated.html", principal, events=events)

    @get("/webhooks")
    async def webhooks(self, request: Request, read_db: NamedDependency[AsyncEngine]) -> Template:
        principal = await principal_of(request)
        if refused := lacks(request, principal, "admin"):
            return refused
        async with read_db.connect() as conn:
            endpoints = [webhooks_service.webhook_view(row) for row in await webhooks_repository.list_endpoints(
                conn, None, MAX_LIMIT)]  # fmt: skip
            deliveries = {
                hook.id: [
                    webhooks_service.delivery_view(row)
                    for row in await webhooks_repository.list_deliveries(conn, hook.id, None, None, 50)
                ]
                for hook in endpoints
            }
        return page(request, "webhooks.html", principal, endpoints=endpoints, deliveries=deliveries)
