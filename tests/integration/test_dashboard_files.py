"""The dashboard's files over HTTP: served without a key (the login form must load) with the
right types and revalidation headers, while the API behind them still needs the key."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import pytest

from tests.integration.api_fixtures import (  # noqa: F401  (fixtures are used by name)
    ApiHarness,
    api_fixture,
    input_root_fixture,
    job_store_fixture,
    make_api_fixture,
)

KEY = "k" * 24
STATIC = resources.files("talkingface.dashboard").joinpath("static")


def test_the_page_and_every_file_it_names_are_served_with_their_types(api: ApiHarness) -> None:
    page = api.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    named = re.findall(r'(?:href|src)="(/ui/[^"]+)"', page.text)
    assert {"/ui/app.js", "/ui/style.css"} <= set(named)
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for path in named:
        response = api.client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(types[path[path.rindex(".") :]])
        assert response.headers["x-content-type-options"] == "nosniff"


def test_every_module_the_page_imports_is_served(api: ApiHarness) -> None:
    """A renamed module would break the page only in a browser: follow the imports here."""
    seen: set[str] = set()
    pending = ["app.js"]
    while pending:
        name = pending.pop()
        seen.add(name)
        response = api.client.get(f"/ui/{name}")
        assert response.status_code == 200, f"{name} is imported but not served"
        for target in re.findall(r'from "\./([a-z0-9_-]+\.js)"', response.text):
            if target not in seen:
                pending.append(target)
    shipped = {p.name for p in STATIC.iterdir() if p.name.endswith(".js")}
    assert seen == shipped, f"modules never imported: {shipped - seen}"


def test_an_unchanged_file_is_revalidated_with_a_304(api: ApiHarness) -> None:
    first = api.client.get("/ui/app.js")
    again = api.client.get("/ui/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize("path", ["/ui/nope.js", "/ui/..%2Fapp.py", "/ui/index.HTML", "/ui/x.py"])
def test_files_outside_the_dashboard_are_not_served(api: ApiHarness, path: str) -> None:
    response = api.client.get(path)
    assert response.status_code == 404
    assert "error" in response.json()


def test_with_keys_the_page_loads_without_one_but_the_api_does_not(make_api: Any) -> None:
    keyed: ApiHarness = make_api(keys=[KEY])
    assert keyed.client.get("/").status_code == 200
    assert keyed.client.get("/ui/app.js").status_code == 200
    assert keyed.client.get("/v1/jobs").status_code == 401
    assert keyed.client.get("/ui-other").status_code == 401  # only the dashboard's prefix
    authorized = keyed.client.get("/v1/jobs", headers={"Authorization": f"Bearer {KEY}"})
    assert authorized.status_code == 200


def test_the_browser_guard_lets_the_pages_own_requests_through(api: ApiHarness) -> None:
    """Keyless loopback server: same-origin calls carry the page's Origin and pass; a page on
    another site is still refused."""
    own = {"Origin": "http://127.0.0.1:8383", "Host": "127.0.0.1:8383"}
    assert api.client.post("/v1/queue/pause", headers=own).status_code == 200
    foreign = {"Origin": "https://evil.example", "Host": "127.0.0.1:8383"}
    assert api.client.post("/v1/queue/resume", headers=foreign).status_code == 403
