"""Catalog bodies are also kept gzip-compressed, for clients that accept gzip (the OpenAI SDK, httpx,
browsers): the same JSON, a tenth of the bytes, with an ETag of its own."""

import json

import pytest

from app.catalog.endpoints import accepts_gzip

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its


@pytest.fixture
async def reader(make_key) -> dict[str, str]:
    return {"X-API-Key": await make_key("catalog:read")}


@pytest.mark.parametrize("path", ["/models", "/v1/models", "/models/embedding"])
async def test_gzip_when_accepted_identity_otherwise(client, reader, path):
    plain = await client.get(path, headers={**reader, "Accept-Encoding": "identity"})
    zipped = await client.get(path, headers={**reader, "Accept-Encoding": "gzip, deflate"})
    assert plain.status_code == zipped.status_code == 200
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert plain.headers["vary"] == zipped.headers["vary"] == "Accept-Encoding"
    # httpx decodes the body: the same JSON, byte for byte, in far fewer bytes on the wire.
    assert zipped.content == plain.content
    assert int(zipped.headers["content-length"]) < len(plain.content) / 5
    assert json.loads(zipped.content)
    # Each representation has its own ETag, and each revalidates to a 304.
    assert zipped.headers["etag"] != plain.headers["etag"]
    for response, encoding in ((plain, "identity"), (zipped, "gzip")):
        again = await client.get(
            path, headers={**reader, "Accept-Encoding": encoding, "If-None-Match": response.headers["etag"]}
        )
        assert again.status_code == 304 and again.headers["etag"] == response.headers["etag"]


async def test_small_bodies_are_not_compressed(client, reader):
    response = await client.get("/models/ollama/codegeex4", headers={**reader, "Accept-Encoding": "gzip"})
    assert response.status_code == 200 and "content-encoding" not in response.headers


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", False),
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate", False),
        ("identity", False),
        ("*", True),
        ("x-gzip", True),
        ("GZIP;Q=0.5", True),
        ("gzip;q=0", False),
        ("gzip;q=0, *", False),
        ("*, gzip;q=0", False),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("gzip;q=nonsense", False),
    ],
)
def test_accept_encoding(header, expected):
    assert accepts_gzip(header) is expected
