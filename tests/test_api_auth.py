"""API_TOKEN set: mutating endpoints need the bearer token; reads stay open."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .test_api_support import running_api

TOKEN = "t0ken-for-tests-only"
GOOD = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(module_db_url: str) -> Iterator[httpx.Client]:
    with running_api(module_db_url, api_token=TOKEN) as server, server.client() as c:
        yield c


CREATE = {"name": "primary", "api_key": "key", "access_token": "tok"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/collectors", CREATE),
        ("POST", "/collectors/primary/start", None),
        ("POST", "/collectors/primary/stop", None),
        ("POST", "/collectors/primary/subscribe", {"watchlist": "IT"}),
        ("POST", "/collectors/primary/unsubscribe", {"watchlist": "IT"}),
        ("POST", "/collectors/primary/mode", {"mode": "ltp"}),
        ("PUT", "/collectors/primary/credentials", {"access_token": "x"}),
        ("DELETE", "/collectors/primary", None),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
     {"Authorization": f"Basic {TOKEN}"}],
)
def test_mutations_without_the_token_are_401(
    client: httpx.Client, method: str, path: str, body: object, headers: dict[str, str]
) -> None:
    r = client.request(method, path, json=body, headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in r.text


def test_mutations_with_the_token_work(client: httpx.Client) -> None:
    assert client.post("/collectors", json=CREATE, headers=GOOD).status_code == 201
    assert client.post("/collectors/primary/start", headers=GOOD).status_code == 200
    assert client.post("/collectors/primary/start", headers={
        "Authorization": f"bearer {TOKEN}"}).status_code == 200  # scheme is case-insensitive
    assert client.delete("/collectors/primary", headers=GOOD).status_code == 200


def test_reads_and_merge_stay_open(client: httpx.Client) -> None:
    assert client.get("/collectors").status_code == 200
    assert client.get("/collectors/metrics").status_code == 200
    assert client.get("/watchlists/IT").status_code == 200
    assert client.post("/watchlists/merge", json={"watchlists": ["IT"]}).status_code == 200
