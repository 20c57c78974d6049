"""`make run`: start every component, keep it running, stop it cleanly.

Components are child processes (simulator, Prefect server, flow deployments, streaming
service, API); the embedded database is a server we start with pg_ctl. A child that dies
(even by ``kill -9``) is restarted with exponential backoff, and the restart is logged and
counted. State goes to ``MB_HOME/run/status.json`` after every change, which
``market-bridge status`` reads; ``market-bridge stop`` signals the supervisor's pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from market_bridge.settings import Settings

COMPONENTS = ("database", "simulator", "prefect", "streaming", "api")
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= int(resp.status) < 500
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class Child:
    name: str
    argv: list[str]
    url: str | None = None
    health_url: str | None = None
    component: str = ""  # status key this child reports under (several may share one)
    after: tuple[str, ...] = ()  # children that must be running (or done) before this starts
    oneshot: bool = False  # a job: exit 0 means done, not a crash
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    state: str = "stopped"
    started_at: float = 0.0
    next_start: float = 0.0
    backoff: float = BACKOFF_INITIAL
    last_exit: int | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


@dataclass
class Supervisor:
    settings: Settings
    children: list[Child]
    env: dict[str, str]
    database: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print
    stop_database: Callable[[], None] | None = None
    _stopping: bool = False

    @property
    def status_file(self) -> Path:
        return self.settings.run_dir / "status.json"

    @property
    def pid_file(self) -> Path:
        return self.settings.run_dir / "supervisor.pid"

    # -- children -------------------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        log_path = self.settings.log_dir / f"{child.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as fh:
            child.proc = subprocess.Popen(
                child.argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True,
            )
        child.state = "starting"
        child.started_at = time.monotonic()

    def _ready_to_start(self, child: Child) -> bool:
        states = {c.name: c.state for c in self.children}
        return all(states.get(dep) in ("running", "done") for dep in child.after)

    def _check(self, child: Child, now: float) -> None:
        if child.proc is None:
            if child.state in ("restarting", "waiting") and now >= child.next_start \
                    and self._ready_to_start(child):
                self._spawn(child)
            return
        code = child.proc.poll()
        if code is None:
            if child.state == "starting":
                healthy = child.health_url is None or http_ok(child.health_url)
                if healthy:
                    child.state = "running"
                    self.log(f"{child.name}: running (pid {child.proc.pid})"
                             + (f" at {child.url}" if child.url else ""))
            if child.state == "running" and now - child.started_at > 60:
                child.backoff = BACKOFF_INITIAL  # a minute up: forget earlier crashes
            return
        child.last_exit = code
        child.proc = None
        if self._stopping:
            child.state = "stopped"
            return
        if child.oneshot and code == 0:
            child.state = "done"
            self.log(f"{child.name}: done")
            return
        child.restarts += 1
        child.state = "restarting"
        child.next_start = now + child.backoff
        self.log(f"{child.name}: exited with code {code}; restart #{child.restarts} in "
                 f"{child.backoff:.0f}s (log: {self.settings.log_dir / (child.name + '.log')})")
        child.backoff = min(BACKOFF_MAX, child.backoff * 2)

    def _terminate(self, child: Child, timeout: float = 15.0) -> None:
        proc = child.proc
        if proc is None or proc.poll() is not None:
            child.state = "stopped"
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.log(f"{child.name}: did not stop in {timeout:.0f}s; killing it")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        child.state = "stopped"
        child.proc = None

    # -- status ---------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"database": dict(self.database)}
        for key in COMPONENTS[1:]:
            members = [c for c in self.children if c.component == key]
            if not members:
                out[key] = {"state": "disabled", "url": None, "pid": None, "restarts": 0}
                continue
            main = next((c for c in members if not c.oneshot), members[0])
            states = {c.state for c in members} - {"done"} or {"running"}
            state = "running" if states == {"running"} else (
                "restarting" if "restarting" in states else sorted(states)[0])
            out[key] = {
                "state": state,
                "url": main.url,
                "pid": main.pid,
                "restarts": sum(c.restarts for c in members),
                "processes": {c.name: {"pid": c.pid, "state": c.state,
                                       "restarts": c.restarts, "last_exit": c.last_exit}
                              for c in members},
            }
        out["supervisor"] = {"pid": os.getpid(), "updated_at": time.time()}
        return out

    def write_status(self) -> None:
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot(), indent=2))
        os.replace(tmp, self.status_file)

    # -- main loop ------------------------------------------------------------------
    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(str(os.getpid()))

        def _stop(signum: int, _frame: object) -> None:
            self._stopping = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        for child in self.children:
            child.state = "waiting"
        announced = False
        try:
            while not self._stopping:
                now = time.monotonic()
                for child in self.children:
                    self._check(child, now)
                self.write_status()
                if not announced and all(c.state in ("running", "done")
                                         for c in self.children):
                    announced = True
                    if on_ready is not None:
                        on_ready()
                time.sleep(0.5)
        finally:
            self.log("stopping: api, streaming (flushes), flows, prefect, simulator")
            for child in reversed(self.children):
                self._terminate(child)
            if self.stop_database is not None:
                self.stop_database()
                self.database["state"] = "stopped"
                self.database["pid"] = None
            self.write_status()
            self.pid_file.unlink(missing_ok=True)
            self.log("stopped; nothing left running")


def running_supervisor(settings: Settings) -> int | None:
    """The pid of a live supervisor for this MB_HOME, if any."""
    pid_file = settings.run_dir / "supervisor.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def market_bridge_argv(*args: str) -> list[str]:
    exe = shutil.which("market-bridge", path=str(Path(sys.executable).parent))
    if exe:
        return [exe, *args]
    return [sys.executable, "-m", "market_bridge.cli.main", *args]
