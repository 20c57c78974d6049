"""Start a ``gap-fill`` flow run through the Prefect API, server-side (``POST /dashboard/gap-fill``).

Two calls: ``GET {api}/deployments/name/gap-fill/gap-fill`` (the deployment served by
``market-bridge flows serve``) for its id, then ``POST {api}/deployments/{id}/create_flow_run``
with the parameters. The Prefect server URL is ``PREFECT_API_URL`` (as ``market-bridge run``
sets it), else the local server on ``MB_PREFECT_PORT``; the UI is ``PREFECT_UI_URL``, else the
API URL without ``/api``. ``PREFECT_API_AUTH_STRING`` (basic auth) is sent when set.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

import httpx
from sanic import Sanic

from api.errors import ApiError

FLOW_NAME = "gap-fill"
DEPLOYMENT_NAME = "gap-fill"
TIMEOUT_S = 5.0
_SERVE_HINT = (
    "start the deployments with `market-bridge flows serve` (`market-bridge run` does) "
    "against this Prefect server"
)


@dataclass(frozen=True, slots=True)
class PrefectUrls:
    api: str
    ui: str


def prefect_urls(app: Sanic) -> PrefectUrls:
    """Where the Prefect API and UI are; ``app.ctx.prefect_api_url``/``prefect_ui_url`` win
    (tests), then the environment, then the local server of ``market-bridge run``."""
    api = (
        getattr(app.ctx, "prefect_api_url", None)
        or os.environ.get("PREFECT_API_URL")
        or f"http://127.0.0.1:{app.ctx.settings.prefect_port}/api"
    ).rstrip("/")
    ui = (
        getattr(app.ctx, "prefect_ui_url", None)
        or os.environ.get("PREFECT_UI_URL")
        or api.removesuffix("/api")
    ).rstrip("/")
    return PrefectUrls(api, ui)


def _headers() -> dict[str, str]:
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    if not auth:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


def unavailable(reason: str) -> ApiError:
    return ApiError(503, "prefect unavailable", reason, {"Retry-After": "10"})


async def create_gap_fill_run(urls: PrefectUrls, parameters: dict[str, Any]) -> dict[str, Any]:
    """The new flow run (``id``, ``name``, ...); ``ApiError`` 503 when Prefect cannot take it."""
    # trust_env=False: the Prefect server is ours (loopback); no proxy from the environment.
    async with httpx.AsyncClient(
        base_url=urls.api, timeout=TIMEOUT_S, headers=_headers(), trust_env=False
    ) as client:
        try:
            found = await client.get(f"/deployments/name/{FLOW_NAME}/{DEPLOYMENT_NAME}")
            if found.status_code == 404:
                raise unavailable(
                    f"the Prefect server at {urls.api} has no '{FLOW_NAME}/{DEPLOYMENT_NAME}' "
                    f"deployment: {_SERVE_HINT}"
                )
            _check(found, urls)
            deployment_id = found.json()["id"]
            created = await client.post(
                f"/deployments/{deployment_id}/create_flow_run",
                json={"parameters": parameters, "tags": ["dashboard"]},
            )
            _check(created, urls)
            run: dict[str, Any] = created.json()
        except httpx.HTTPError as exc:
            raise unavailable(
                f"cannot reach the Prefect API at {urls.api} ({type(exc).__name__}: {exc}); "
                "is the Prefect server running (`market-bridge run` starts it)?"
            ) from None
        except (ValueError, KeyError, TypeError):
            raise unavailable(f"unexpected answer from the Prefect API at {urls.api}") from None
    run["deployment_id"] = deployment_id
    return run


def _check(response: httpx.Response, urls: PrefectUrls) -> None:
    if response.is_success:
        return
    detail = response.text[:300].strip()
    raise unavailable(
        f"the Prefect API at {urls.api} answered {response.status_code} to "
        f"{response.request.method} {response.request.url.path}: {detail}"
    )
