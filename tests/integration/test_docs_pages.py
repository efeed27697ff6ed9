"""/docs and /redoc: served with local assets, readable without a key when keys are set, and
the document declares the key schemes while every API call still needs a key."""

from __future__ import annotations

import re
from typing import Any

from tests.integration.api_fixtures import (  # noqa: F401  (fixtures are used by name)
    ApiHarness,
    api_fixture,
    input_root_fixture,
    job_store_fixture,
    make_api_fixture,
)

KEY = "docs-test-key-0123456789"


def _asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_docs_pages_and_their_assets_load_without_a_key_on_a_keyed_server(make_api: Any) -> None:
    api: ApiHarness = make_api(keys=[KEY])

    for page, marker in (("/docs", "SwaggerUIBundle"), ("/redoc", "<redoc spec-url")):
        response = api.client.get(page)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/html")
        assert marker in response.text and "/openapi.json" in response.text
        urls = _asset_urls(response.text)
        assert urls, page
        for url in urls:
            assert url.startswith("/docs-assets/"), f"{page} loads {url} from elsewhere"
            asset = api.client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url
    assert "googleapis" not in api.client.get("/redoc").text
    for page in ("/docs", "/redoc"):  # Redoc's sidebar logo comes from a CDN: the policy stops it
        policy = api.client.get(page).headers["content-security-policy"]
        assert "default-src 'self'" in policy and "img-src 'self' data:" in policy
    assert api.client.get("/docs-assets/redoc.standalone.js").status_code == 200
    assert api.client.get("/docs-assets/no-such-file.js").status_code == 404


def test_the_document_declares_the_key_schemes_and_calls_still_need_a_key(make_api: Any) -> None:
    api: ApiHarness = make_api(keys=[KEY])

    document = api.client.get("/openapi.json")
    assert document.status_code == 200
    spec = document.json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["APIKeyHeader"]["description"],
    }
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["APIKeyQuery"]["in"] == "query" and schemes["APIKeyQuery"]["name"] == "api_key"
    paths = spec["paths"]
    assert {"APIKeyHeader": []} in paths["/v1/jobs"]["get"]["security"]
    assert {"HTTPBearer": []} in paths["/v1/jobs"]["get"]["security"]
    assert {"APIKeyQuery": []} not in paths["/v1/jobs"]["get"]["security"]
    assert {"APIKeyQuery": []} in paths["/easy/query"]["get"]["security"]
    assert "security" not in paths["/healthz"]["get"]  # the probes need no key
    assert "401" in paths["/v1/jobs"]["get"]["responses"]

    refused = api.client.get("/v1/jobs")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "UNAUTHORIZED"
    assert api.client.get("/v1/jobs", headers={"X-API-Key": "wrong"}).status_code == 401
    assert api.client.get("/v1/jobs", headers={"X-API-Key": KEY}).status_code == 200
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert api.client.get("/v1/jobs", headers=bearer).status_code == 200
    easy = api.client.get("/easy/query", params={"code": "nope"}).json()
    assert easy["code"] == 9999 and "未授权" in easy["msg"]
    easy = api.client.get("/easy/query", params={"code": "nope", "api_key": KEY}).json()
    assert easy["code"] == 10004
    # the query key is honoured on /easy only, as the document says
    assert api.client.get("/v1/jobs", params={"api_key": KEY}).status_code == 401
    # the assets' prefix opens nothing else
    assert api.client.get("/docs-assets/../v1/jobs").status_code in (401, 404)


def test_a_keyless_server_declares_no_key_schemes(api: ApiHarness) -> None:
    spec = api.client.get("/openapi.json").json()
    assert "securitySchemes" not in spec.get("components", {})
    assert all(
        "security" not in operation
        for operations in spec["paths"].values()
        for operation in operations.values()
    )
    assert api.client.get("/docs").status_code == 200
    assert api.client.get("/redoc").status_code == 200
