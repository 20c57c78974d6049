"""The embedded TimescaleDB cluster: initdb, start, stop, status.

Market Bridge starts its own PostgreSQL 15 + TimescaleDB cluster under ``MB_HOME`` unless
``DATABASE_URL`` points at another server. ``initdb`` refuses to run as root, so when we are
root the server runs as an unprivileged OS user (``marketbridge`` by default, created by
``market-bridge setup``); as any other user it simply runs as that user.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

PG_BIN = Path(os.environ.get("MB_PG_BIN", "/usr/lib/postgresql/15/bin"))

_MB = 1 << 20


def _ram_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2048 * _MB


def ingest_settings(ram: int | None = None) -> dict[str, str]:
    """Durable settings for streaming ingest (docs/operations.md, "Database settings"):
    shared_buffers an eighth of the machine's RAM, between 256MB and 2GB (the current
    chunks of md.tick_data and their indexes stay in memory through a trading day);
    checkpoints every 15 min or 4GB of WAL rather than 5 min (after each checkpoint the
    first change of every page writes a full page image to the WAL)."""
    ram = _ram_bytes() if ram is None else ram
    buffers = min(max(ram // 8, 256 * _MB), 2048 * _MB) // _MB
    return {
        "shared_buffers": f"'{buffers}MB'",
        "max_wal_size": "'4GB'",
        "checkpoint_timeout": "'15min'",
    }


# values earlier versions wrote at initdb: replaced by ingest_settings() at start (a
# value changed by hand or by ALTER SYSTEM is left alone)
_FORMER_DEFAULTS = {"shared_buffers": {"'256MB'"}, "max_wal_size": {"'2GB'"}}


class ClusterError(RuntimeError):
    """The embedded cluster could not be initialised, started or stopped."""


@dataclass
class ClusterStatus:
    running: bool
    pid: int | None
    data_dir: Path
    port: int


@dataclass
class LocalCluster:
    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    os_user: str = "marketbridge"
    superuser: str = "market_bridge"
    log_file: Path | None = None
    password_file: Path | None = None  # None: trust auth on loopback (test clusters)
    fast_unsafe: bool = False  # fsync off etc.: for throwaway test clusters only

    # -- helpers --------------------------------------------------------------------
    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _cmd(self, *args: str | Path) -> list[str]:
        argv = [str(a) for a in args]
        if self._as_root:
            return ["runuser", "-u", self.os_user, "--", *argv]
        return argv

    def _run(self, *args: str | Path, what: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip()
            hint = f"; see {self.log_file}" if self.log_file else ""
            raise ClusterError(f"{what} failed: {detail}{hint}")
        return proc

    def _owner_ids(self) -> tuple[int, int]:
        if not self._as_root:
            return os.getuid(), os.getgid()
        try:
            entry = pwd.getpwnam(self.os_user)
        except KeyError:
            raise ClusterError(
                f"OS user {self.os_user!r} does not exist; run 'market-bridge setup' first"
            ) from None
        return entry.pw_uid, entry.pw_gid

    def _make_reachable(self, path: Path) -> None:
        """Let the server's OS user traverse the directories above ``path``.

        When we are root, MB_HOME usually sits under /root (mode 700). We grant only
        search (x) permission to that one user with an ACL where possible.
        """
        if not self._as_root:
            return
        for parent in reversed(path.parents):
            probe = subprocess.run(
                self._cmd("test", "-x", parent), capture_output=True, check=False
            )
            if probe.returncode == 0:
                continue
            if shutil.which("setfacl"):
                subprocess.run(["setfacl", "-m", f"u:{self.os_user}:x", str(parent)], check=True)
            else:
                parent.chmod(parent.stat().st_mode | 0o001)

    # -- lifecycle ------------------------------------------------------------------
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialized():
            return
        if not (PG_BIN / "initdb").exists():
            raise ClusterError(f"{PG_BIN}/initdb not found; run 'market-bridge setup' first")
        uid, gid = self._owner_ids()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chown(self.data_dir, uid, gid)
        self.data_dir.chmod(0o700)
        self._make_reachable(self.data_dir)
        args: list[str | Path] = [
            PG_BIN / "initdb", "-D", self.data_dir, "-U", self.superuser,
            "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions",
        ]
        pwcopy: Path | None = None
        if self.password_file is not None:
            if not self.password_file.exists():
                self.password_file.parent.mkdir(parents=True, exist_ok=True)
                self.password_file.write_text(secrets.token_urlsafe(24))
                self.password_file.chmod(0o600)
            pwcopy = self.data_dir.parent / f".initdb-pw-{os.getpid()}"
            pwcopy.write_text(self.password_file.read_text().strip() + "\n")
            os.chown(pwcopy, uid, gid)
            pwcopy.chmod(0o600)
            args += ["--auth-local=scram-sha-256", "--auth-host=scram-sha-256", f"--pwfile={pwcopy}"]
        else:
            args += ["--auth=trust"]
        if self.fast_unsafe:
            args += ["--no-sync"]
        try:
            self._run(*args, what="initdb")
        finally:
            if pwcopy is not None:
                pwcopy.unlink(missing_ok=True)
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.data_dir}'",
            "shared_preload_libraries": "'timescaledb'",
            "timescaledb.telemetry_level": "'off'",
            "max_connections": "200",
            **ingest_settings(),
            "log_min_messages": "warning",
            "log_timezone": "'UTC'",
            "timezone": "'UTC'",
        }
        if self.fast_unsafe:
            settings.update(
                {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                 "shared_buffers": "'128MB'", "max_connections": "100"}
            )
        conf = self.data_dir / "postgresql.auto.conf"
        with conf.open("a") as fh:
            fh.write("# written by market-bridge\n")
            for key, value in settings.items():
                fh.write(f"{key} = {value}\n")
        os.chown(conf, uid, gid)

    def _ensure_port_setting(self) -> None:
        """The port is configurable after initdb: rewrite it if MB_DB_PORT changed. Clusters
        made by earlier versions get the current ``ingest_settings()``: a setting is added
        when missing, and replaced when it still has the value market-bridge wrote."""
        conf = self.data_dir / "postgresql.auto.conf"
        if not conf.exists():
            return
        lines = conf.read_text().splitlines()
        wanted = f"port = {self.port}"
        new = [wanted if ln.startswith("port = ") else ln for ln in lines]
        if not self.fast_unsafe:
            settings = ingest_settings()
            seen: set[str] = set()
            for i, ln in enumerate(new):
                key, sep, value = (part.strip() for part in ln.partition("="))
                if not sep or key not in settings:
                    continue
                seen.add(key)
                if value in _FORMER_DEFAULTS.get(key, ()):
                    new[i] = f"{key} = {settings[key]}"
            new += [f"{k} = {v}" for k, v in settings.items() if k not in seen]
        if new != lines:
            stat = conf.stat()
            conf.write_text("\n".join(new) + "\n")
            os.chown(conf, stat.st_uid, stat.st_gid)

    def status(self) -> ClusterStatus:
        pidfile = self.data_dir / "postmaster.pid"
        pid: int | None = None
        running = False
        if pidfile.exists():
            try:
                pid = int(pidfile.read_text().splitlines()[0])
                os.kill(pid, 0)
                running = True
            except (ValueError, IndexError, ProcessLookupError, PermissionError):
                running = False
        return ClusterStatus(running=running, pid=pid if running else None,
                             data_dir=self.data_dir, port=self.port)

    def start(self, timeout: float = 60.0) -> ClusterStatus:
        self.init()
        if self.status().running:
            return self.status()
        self._ensure_port_setting()
        log = self.log_file or (self.data_dir.parent / "postgres.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch(exist_ok=True)
        uid, gid = self._owner_ids()
        os.chown(log, uid, gid)
        self._make_reachable(log)
        self._run(
            PG_BIN / "pg_ctl", "-D", self.data_dir, "-l", log, "-w", "-t", str(int(timeout)),
            "start", what=f"starting PostgreSQL on port {self.port}",
        )
        deadline = time.monotonic() + timeout
        while not self.status().running and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.status()

    def stop(self, mode: str = "fast", timeout: float = 60.0) -> None:
        if not self.status().running:
            return
        self._run(
            PG_BIN / "pg_ctl", "-D", self.data_dir, "-m", mode, "-w", "-t", str(int(timeout)),
            "stop", what="stopping PostgreSQL",
        )

    def dsn(self, dbname: str, password: str | None = None) -> str:
        if password is None and self.password_file is not None and self.password_file.exists():
            password = self.password_file.read_text().strip()
        auth = quote(self.superuser, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"
