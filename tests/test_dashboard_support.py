"""Helpers for the dashboard tests (no tests here): a fake Prefect API on a loopback port."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEPLOYMENT_PATH = "/api/deployments/name/gap-fill/gap-fill"


class FakePrefect:
    """Answers the two calls ``POST /dashboard/gap-fill`` makes; records the flow runs.
    ``deployed = False`` makes the deployment lookup a 404 (deployments not served)."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.deployed = True
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path == DEPLOYMENT_PATH and fake.deployed:
                    self._json(200, {"id": "dep-42", "name": "gap-fill"})
                else:
                    self._json(404, {"detail": "Deployment not found."})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/api/deployments/dep-42/create_flow_run":
                    fake.runs.append(body)
                    self._json(201, {"id": f"run-{len(fake.runs)}", "name": "brave-fox",
                                     "state": {"type": "SCHEDULED"}})  # fmt: skip
                else:
                    self._json(404, {"detail": "Not Found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakePrefect:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
