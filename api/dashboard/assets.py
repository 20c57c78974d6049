"""The dashboard's files: the page, its own ES modules and CSS, and the chart library.

Everything is served from local disk (the dashboard works offline, no CDN). The chart
library (TradingView lightweight-charts, pinned in the repository's package.json and
package-lock.json) is installed by ``market_bridge/setup/install_web.sh`` (run by
``market-bridge setup``): it runs ``npm ci`` and copies the standalone ES module build into
``api/dashboard/static/vendor/`` (ignored by git). The repository's ``node_modules`` is the
fallback when the copy is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

from sanic import HTTPResponse, Request
from sanic.response import file

from api.errors import ApiError, not_found

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
INDEX = STATIC_DIR / "index.html"
REPO_ROOT = PACKAGE_DIR.parents[1]
LIBRARY_FILE = "lightweight-charts.standalone.production.mjs"
LIBRARY_CANDIDATES = (
    STATIC_DIR / "vendor" / LIBRARY_FILE,
    REPO_ROOT / "node_modules" / "lightweight-charts" / "dist" / LIBRARY_FILE,
)
LIBRARY_INSTALL_HINT = (
    "the chart library (lightweight-charts) is not installed: run `make run` or "
    "`market-bridge setup` (or `bash market_bridge/setup/install_web.sh`), which installs it "
    "with npm from package-lock.json, then reload the page"
)
# Only these kinds of files are served from static/ (module scripts need a JS MIME type).
MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")  # one segment, not hidden
_VERSION = re.compile(rb"Lightweight Charts\S* v(\d+\.\d+\.\d+)")


def library_path() -> Path | None:
    for candidate in LIBRARY_CANDIDATES:
        if candidate.is_file():
            return candidate
    return None


def library_version(path: Path) -> str | None:
    with path.open("rb") as fh:
        match = _VERSION.search(fh.read(512))
    return match.group(1).decode() if match else None


async def _send(request: Request, path: Path, mime: str) -> HTTPResponse:
    # Sanic's default is Cache-Control: no-cache: the browser revalidates with
    # If-Modified-Since (a 304 when unchanged), so an upgrade shows at once.
    return await file(path, request_headers=request.headers, mime_type=mime)


async def send_index(request: Request) -> HTTPResponse:
    return await _send(request, INDEX, MIME_TYPES[".html"])


async def send_static(request: Request, name: str) -> HTTPResponse:
    """A file directly in static/ by name: no subdirectories, nothing hidden."""
    path = STATIC_DIR / name
    mime = MIME_TYPES.get(path.suffix)
    if mime is None or not _SAFE_NAME.match(name) or not path.is_file():
        raise not_found("not found", f"no dashboard file {name!r}")
    return await _send(request, path, mime)


async def send_library(request: Request) -> HTTPResponse:
    path = library_path()
    if path is None:
        raise ApiError(404, "chart library missing", LIBRARY_INSTALL_HINT)
    return await _send(request, path, MIME_TYPES[".mjs"])
