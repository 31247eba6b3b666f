"""The dashboard: signed in with an API key kept in an HttpOnly, SameSite=Strict cookie, forms protected
by a double-submit token, every page within the key's scopes and account. The browser test drives a real
headless Chromium (Debian's, through Playwright) against the app served by uvicorn, and saves a
screenshot of each page to `screenshots/` (git-ignored)."""

import asyncio
import csv
import io
import re
import shutil
from pathlib import Path

import httpx
import pytest

from tests.helpers import assert_error
from tests.test_client import LiveServer

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its

BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")
# No page scrolls sideways at the test's window width.
FITS_THE_WINDOW = "document.documentElement.scrollWidth <= window.innerWidth"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


async def csrf_of(client) -> str:
    page = await client.get("/dashboard/sign-in")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    return CSRF_FIELD.search(page.text).group(1)


async def sign_in(client, key: str):
    token = await csrf_of(client)
    return await client.post("/dashboard/sign-in", data={"key": key, "csrf": token}, follow_redirects=False)


async def seed(client, admin) -> None:
    """A webhook, two accounts with grants, charged usage over two models, unrated usage (announced to the
    webhook) and a hold."""
    hook = {"url": "https://example.com/hooks", "events": ["*"], "description": "ops pager"}
    assert (await client.post("/webhooks", json=hook, headers=admin)).status_code == 201
    for account_id, name in (("acme", "Acme Corp"), ("globex", "Globex")):
        assert (await client.post("/accounts", json={"id": account_id, "name": name}, headers=admin)).status_code == 201
        grant = await client.post(f"/accounts/{account_id}/grants", json={"amount": "100"}, headers=admin)
        assert grant.status_code == 201
    for n, (model, tokens) in enumerate([("openai/gpt-4o", 1000), ("anthropic/claude-haiku-4-5", 4000)] * 2):
        body = {"event_id": f"e{n}", "account_id": "acme", "model": model, "input_tokens": tokens, "output_tokens": 50}
        assert (await client.post("/usage", json=body, headers=admin)).status_code == 201
    body = {"event_id": "u1", "account_id": "acme", "model": "acme-private-llm", "input_tokens": 10}
    assert (await client.post("/usage", json=body, headers=admin)).status_code == 202
    hold = {"account_id": "acme", "model": "openai/gpt-4o", "input_tokens": 100, "max_output_tokens": 100}
    assert (await client.post("/authorizations", json=hold, headers=admin)).status_code == 201


async def test_sign_in_sets_a_strict_http_only_cookie_and_checks_the_form(client, admin):
    assert (await client.get("/dashboard", follow_redirects=False)).headers["location"] == "/dashboard/sign-in"
    bad = await sign_in(client, "cmk_nottherightkey" + "x" * 40)
    assert bad.status_code == 401 and "Invalid API key" in bad.text
    assert "cm_session" not in bad.headers.get("set-cookie", "")

    token = await csrf_of(client)
    forged = await client.post("/dashboard/sign-in", data={"key": admin["X-API-Key"], "csrf": "forged"})
    assert_error(forged, 403, "csrf_failed")
    missing = await client.post("/dashboard/sign-in", data={"key": admin["X-API-Key"]})
    assert_error(missing, 403, "csrf_failed")

    signed = await client.post(
        "/dashboard/sign-in", data={"key": admin["X-API-Key"], "csrf": token}, follow_redirects=False
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/dashboard"
    session = next(c for c in signed.headers.get_list("set-cookie") if c.startswith("cm_session="))
    assert "HttpOnly" in session and "samesite=strict" in session.lower() and "Path=/dashboard" in session
    assert "Secure" not in session  # plain http here; over https the cookie is Secure
    assert (await client.get("/dashboard")).status_code == 200

    out = await client.post("/dashboard/sign-out", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/sign-in"
    assert (await client.get("/dashboard", follow_redirects=False)).status_code == 303


async def test_an_account_bound_key_sees_only_its_account(client, admin, make_key):
    await seed(client, admin)
    bound = await make_key("ledger:read", "catalog:read", account_id="globex")
    assert (await sign_in(client, bound)).status_code == 303
    home = await client.get("/dashboard", follow_redirects=False)
    assert home.headers["location"] == "/dashboard/accounts/globex"
    assert "Globex" in (await client.get("/dashboard/accounts/globex")).text
    assert_error(await client.get("/dashboard/accounts/acme"), 404, "account_not_found")
    assert_error(await client.get("/dashboard/accounts/acme/ledger.csv"), 404, "account_not_found")
    report = await client.get("/dashboard/reports", params={"group_by": "account"})
    assert "globex" in report.text and "acme" not in report.text
    assert "Not for this key" in (await client.get("/dashboard/webhooks")).text


async def test_accounts_page_by_page_and_the_search_reaches_every_account(client, admin):
    for n in range(105):
        body = {"id": f"t{n:03}", "name": f"Tenant {n}"}
        assert (await client.post("/accounts", json=body, headers=admin)).status_code == 201
    body = {"id": "promo", "name": "100%_off Ltd"}
    assert (await client.post("/accounts", json=body, headers=admin)).status_code == 201
    assert (await sign_in(client, admin["X-API-Key"])).status_code == 303
    ids = re.compile(r'href="/dashboard/accounts/([^"]+)"')

    first = (await client.get("/dashboard")).text
    assert ids.findall(first) == ["promo"] + [f"t{n:03}" for n in range(99)]
    following = re.search(r'href="(/dashboard\?[^"]+)">Next page', first).group(1).replace("&amp;", "&")
    second = (await client.get(following)).text
    assert ids.findall(second) == [f"t{n:03}" for n in range(99, 105)]
    assert "Next page" not in second and "First page" in second

    async def found(q: str) -> list[str]:
        return ids.findall((await client.get("/dashboard", params={"q": q})).text)

    # The search runs over every account, past the first page, ignoring case; % and _ are literal.
    assert await found("TENANT 104") == ["t104"]
    assert await found(" t10") == [f"t{n}" for n in range(100, 105)]
    assert await found("0%_") == ["promo"]
    assert await found("1_0") == []
    assert "No account matches" in (await client.get("/dashboard", params={"q": "nobody"})).text


async def test_a_revoked_key_is_signed_out(client, admin, make_key):
    key = await make_key("ledger:read")
    assert (await sign_in(client, key)).status_code == 303
    key_id = key[4:16]
    assert (await client.delete(f"/api-keys/{key_id}", headers=admin)).status_code == 200
    assert (await client.get("/dashboard", follow_redirects=False)).status_code == 303


async def test_the_ledger_csv_is_the_ledger(client, admin):
    await seed(client, admin)
    assert (await sign_in(client, admin["X-API-Key"])).status_code == 303
    exported = await client.get("/dashboard/accounts/acme/ledger.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    api = (await client.get("/accounts/acme/ledger", params={"limit": 1000}, headers=admin)).json()["data"]
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in rows] == [
        (e["kind"], e["amount"], e["balance_after"]) for e in api
    ]
    report = await client.get("/dashboard/reports.csv", params={"group_by": "model"})
    models = [row["model"] for row in csv.DictReader(io.StringIO(report.text))]
    assert models == ["anthropic/claude-haiku-4-5", "openai/gpt-4o"]


@pytest.fixture(scope="module")
def live(settings):
    with LiveServer(settings) as server:
        yield server


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium (apt-get install chromium-headless-shell)")
async def test_every_page_in_a_real_browser(live, make_key, conn_engine):
    from playwright.async_api import async_playwright

    admin = {"X-API-Key": await make_key("admin")}
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as api:
        await seed(api, admin)
    bound_key = await make_key("ledger:read", "catalog:read", account_id="globex")
    SCREENSHOTS.mkdir(exist_ok=True)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=BROWSER)
        try:
            page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()

            async def shot(name: str) -> None:
                await page.screenshot(path=str(SCREENSHOTS / f"dashboard-{name}.png"), full_page=True)

            await page.goto(f"{live.url}/dashboard")
            assert page.url.endswith("/dashboard/sign-in")
            await shot("sign-in")
            await page.fill("input[name=key]", admin["X-API-Key"])
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{live.url}/dashboard")
            accounts = await page.inner_text("table")
            assert "acme" in accounts and "Acme Corp" in accounts and "Globex" in accounts
            await shot("accounts")
            await page.fill("input[type=search]", "glob")
            await page.wait_for_url(re.compile(r"q=glob"))  # submitted as one types (progressive enhancement)
            assert "Globex" in await page.inner_text("table") and "Acme Corp" not in await page.inner_text("table")

            await page.goto(f"{live.url}/dashboard/accounts/acme")
            body = await page.inner_text("main")
            for text in ("Balance over time", "Usage by day", "Usage by model", "Grants", "Holds", "Ledger"):
                assert text in body
            assert await page.locator("svg.chart").count() == 3
            assert "openai/gpt-4o" in body and "anthropic/claude-haiku-4-5" in body
            assert await page.locator("text=auth_").count() == 1  # the open hold
            assert "+00:00" not in body  # times to the second, as in the ledger
            assert await page.evaluate(FITS_THE_WINDOW)
            await shot("account")
            async with page.expect_download() as download_info:
                await page.click("text=Download CSV")
            download = await download_info.value
            saved = SCREENSHOTS / "ledger-acme.csv"
            await download.save_as(str(saved))
            assert saved.read_text().splitlines()[0].startswith("id,account_id,kind")
            assert len(saved.read_text().splitlines()) == 1 + 1 + 4  # header, the grant, four charges

            await page.goto(f"{live.url}/dashboard/catalog?q=gpt-4o")
            catalog = await page.inner_text("table")
            assert "openai/gpt-4o" in catalog and "claude" not in catalog
            assert "Upstream input" in catalog  # an admin key is a finance key
            await shot("catalog")

            await page.goto(f"{live.url}/dashboard/reports?group_by=model")
            report = await page.inner_text("main")
            assert "Revenue by model" in report and "openai/gpt-4o" in report and "Gross margin" in report
            assert "1 usage events wait unrated" in report
            await shot("reports")

            await page.goto(f"{live.url}/dashboard/unrated")
            assert "acme-private-llm" in await page.inner_text("table")
            await shot("unrated")

            await page.goto(f"{live.url}/dashboard/webhooks")
            hooks = await page.inner_text("main")
            assert "https://example.com/hooks" in hooks and "usage.unrated" in hooks
            assert "ConnectError" in hooks and "+00:00" not in hooks
            assert await page.evaluate(FITS_THE_WINDOW)  # a receiver's long error wraps
            await shot("webhooks")

            await page.click("text=Sign out")
            await page.wait_for_url(f"{live.url}/dashboard/sign-in")
            await page.goto(f"{live.url}/dashboard/accounts/acme")
            assert page.url.endswith("/dashboard/sign-in")

            # An account-bound key lands on its own account and sees no other.
            await page.fill("input[name=key]", bound_key)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{live.url}/dashboard/accounts/globex")
            assert "Globex" in await page.inner_text("h1")
            await shot("bound-account")
            response = await page.goto(f"{live.url}/dashboard/accounts/acme")
            assert response.status == 404
        finally:
            await browser.close()
    await asyncio.sleep(0)
