#!/usr/bin/env bash
# Installs the web dashboard's browser library: TradingView lightweight-charts, pinned in
# the repository's package.json and package-lock.json. `npm ci` puts it into node_modules/
# (checked against the lockfile's integrity hashes), then its standalone ES module build is
# copied to api/dashboard/static/vendor/, which the API serves (never committed). Node.js and
# npm come from Debian when missing. Safe to run again: nothing happens when the installed
# copy already has the locked version. Environment: MB_QUIET=1 prints only what changes.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
QUIET="${MB_QUIET:-0}"
LIB=lightweight-charts
DIST_FILE="lightweight-charts.standalone.production.mjs"
VENDOR="$ROOT/api/dashboard/static/vendor"
TARGET="$VENDOR/$DIST_FILE"

say() { [ "$QUIET" = 1 ] || echo "setup: $*"; }

# The version package-lock.json pins (no node needed to read it).
locked="$(sed -n "/\"node_modules\/$LIB\": {/,/}/ s/.*\"version\": \"\([^\"]*\)\".*/\1/p" \
    "$ROOT/package-lock.json" | head -n1)"
[ -n "$locked" ] || { echo "setup: $LIB is not in package-lock.json" >&2; exit 1; }

installed_version() {  # the version in a built file's license header, or nothing
    [ -f "$1" ] && head -c 400 "$1" | sed -n 's/.*Lightweight Charts[^ ]* v\([0-9.]*\).*/\1/p' | head -n1
}

if [ "$(installed_version "$TARGET")" = "$locked" ]; then
    say "$LIB $locked is installed"
    exit 0
fi

built="$ROOT/node_modules/$LIB/dist/$DIST_FILE"
if [ "$(installed_version "$built")" != "$locked" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        if [ "$(id -u)" != 0 ]; then
            echo "setup: npm is missing; install Node.js and npm (sudo apt-get install nodejs npm) or run 'sudo market-bridge setup'" >&2
            exit 1
        fi
        say "installing Debian packages: nodejs npm"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    say "installing $LIB $locked with npm ci"
    (cd "$ROOT" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
fi
[ -f "$built" ] || { echo "setup: npm did not produce $built" >&2; exit 1; }

mkdir -p "$VENDOR"
cp "$built" "$TARGET.tmp"
mv "$TARGET.tmp" "$TARGET"
cp "$ROOT/node_modules/$LIB/LICENSE" "$VENDOR/LICENSE-$LIB" 2>/dev/null || true
say "$LIB $locked copied to ${TARGET#"$ROOT"/}"
