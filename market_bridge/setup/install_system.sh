#!/usr/bin/env bash
# Installs the operating-system pieces Market Bridge needs on Debian bookworm:
# PostgreSQL 15, the TimescaleDB extension (built from Debian's source package when it is
# not installed), the unprivileged OS user that runs the embedded cluster, and Chromium
# for browser tests. Safe to run again: every step checks before it acts.
set -euo pipefail

PG_MAJOR="${MB_PG_MAJOR:-15}"
PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
PG_CONFIG="${PG_BIN}/pg_config"
DB_USER="${MB_DB_OS_USER:-marketbridge}"
WITH_BROWSER="${MB_WITH_BROWSER:-1}"
STATE_DIR="${MB_SETUP_CACHE:-/var/cache/market-bridge}"
QUIET="${MB_QUIET:-0}"

say() { [ "$QUIET" = 1 ] || echo "setup: $*"; }
need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "setup: '$1' needs root (run 'sudo market-bridge setup' once)" >&2
        exit 1
    fi
}

apt_updated=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    need_root "apt-get install ${missing[*]}"
    say "installing Debian packages: ${missing[*]}"
    if [ $apt_updated = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >/dev/null 2> >(grep -v -e "^debconf: delaying" >&2 || true)
}

# 1. PostgreSQL server and the tools we call.
apt_install "postgresql-${PG_MAJOR}" "postgresql-client-${PG_MAJOR}" util-linux ca-certificates acl

# 2. TimescaleDB: Debian's next release carries the source package; bookworm does not.
pkglibdir="$("$PG_CONFIG" --pkglibdir)"
sharedir="$("$PG_CONFIG" --sharedir)"
if ! ls "$sharedir"/extension/timescaledb.control >/dev/null 2>&1 || ! ls "$pkglibdir"/timescaledb*.so >/dev/null 2>&1; then
    need_root "building TimescaleDB"
    apt_install "postgresql-server-dev-${PG_MAJOR}" cmake gcc make libssl-dev libkrb5-dev dpkg-dev xz-utils
    say "building TimescaleDB from Debian's source package (about a minute)"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/lists/partial"
    uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    if [ -z "$uri" ]; then
        uri="$(awk '$1=="deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
    fi
    [ -n "$uri" ] || { echo "setup: cannot find a Debian mirror in the apt configuration" >&2; exit 1; }
    echo "deb-src [trusted=yes] $uri trixie main" > "$work/sources.list"
    aptopts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root)
    apt-get "${aptopts[@]}" update -qq >/dev/null
    (cd "$work" && apt-get "${aptopts[@]}" source --download-only -qq timescaledb >/dev/null)
    (cd "$work" && dpkg-source --no-check -x ./timescaledb_*.dsc src >/dev/null)
    (cd "$work/src" && ./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
        -DWARNINGS_AS_ERRORS=OFF -DPG_CONFIG="$PG_CONFIG" >"$work/bootstrap.log" 2>&1) \
        || { tail -30 "$work/bootstrap.log" >&2; exit 1; }
    (cd "$work/src" && make -C build -j"$(nproc)" install >"$work/build.log" 2>&1) \
        || { tail -30 "$work/build.log" >&2; exit 1; }
    say "TimescaleDB installed into $pkglibdir"
fi

# 3. The unprivileged OS user that owns the embedded cluster (initdb refuses root).
if [ "$(id -u)" = 0 ] && ! id "$DB_USER" >/dev/null 2>&1; then
    say "creating system user $DB_USER"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$DB_USER"
fi

# 4. Chromium for the browser tests and the dashboard screenshots.
if [ "$WITH_BROWSER" = 1 ]; then
    apt_install chromium fonts-dejavu-core
fi
exit 0
