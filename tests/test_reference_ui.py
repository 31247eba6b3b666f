"""The API reference page (`/schema`) works offline: everything it loads comes from the app itself.

The page and its assets need no database, so the app is called (or served) without its lifespan."""

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from app.asgi import create_app
from app.config import Settings
from app.openapi import UI_ASSETS

SETTINGS = replace(Settings.from_env({}), database_url="postgresql+asyncpg://nobody@/unused")
# Debian's headless Chromium (`.ci/run` installs it); the full browser does as well.
BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")


class References(HTMLParser):
    """Every src and href of a page, whatever the tag."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


@pytest.fixture
async def http() -> Iterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(create_app(SETTINGS))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
async def test_schema_page_names_no_other_host(http, path):
    page = await http.get(path)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    urls = references(page.text)
    assert urls, "the page loads nothing: its UI would be missing"
    for url in urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), f"{url} is on another host"
        assert url.startswith("/"), url
    # The scripts that draw the page, its stylesheet and its icon.
    assert {f"{UI_ASSETS}/swagger-ui-bundle.js", f"{UI_ASSETS}/swagger-ui.css"} <= set(urls)


async def test_schema_page_assets_answer_from_the_app(http):
    urls = references((await http.get("/schema")).text)
    kinds = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for url in urls:
        asset = await http.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
        suffix = url[url.rfind(".") :]
        assert asset.headers["content-type"].startswith(kinds[suffix]), (url, asset.headers["content-type"])
    # Public, like the page: no API key needed.
    assert (await http.get(f"{UI_ASSETS}/swagger-ui-bundle.js")).status_code == 200
    assert (await http.get(f"{UI_ASSETS}/no-such-file.js")).status_code == 404


@pytest.fixture
def served() -> Iterator[str]:
    """The app on a loopback port, in a thread."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(SETTINGS), host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium (Debian: apt-get install chromium-headless-shell)")
def test_schema_page_renders_in_a_browser_without_network(served):
    """A real browser, reaching nothing but the app (other names do not resolve, other addresses go to a dead
    proxy), draws the reference: the title and an operation of each tag."""
    command = [
        BROWSER,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--virtual-time-budget=10000",
        "--dump-dom",
        f"{served}/schema",
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "Credit-metered LLM billing" in dom
    for path in ("/health", "/usage", "/reports/usage", "/models"):
        assert f'data-path="{path}"' in dom, f"{path} is not drawn: the page did not render"
