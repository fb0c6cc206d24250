#!/usr/bin/env bash
# Make sure the machine has what `make test` needs besides Python packages.
# Idempotent, and quick when everything is there (no apt-get call then).
#
#   scripts/ensure-test-deps.sh              PostgreSQL: a server answering at
#                                            $DSAR_TEST_PG (host:port) or 127.0.0.1:5432,
#                                            or server binaries for the tests to start a
#                                            throwaway one (Debian package `postgresql`).
#   scripts/ensure-test-deps.sh mariadb      MariaDB: a server answering at
#                                            $DSAR_TEST_MARIADB (host:port) or 127.0.0.1:3306,
#                                            or server binaries (mariadbd, mariadb-install-db)
#                                            for the tests to start a throwaway one (Debian
#                                            package `mariadb-server`).
#   scripts/ensure-test-deps.sh redis        Redis: a server answering at $DSAR_TEST_REDIS
#                                            (host:port) or 127.0.0.1:6379, or a redis-server
#                                            binary for the tests to start a throwaway one
#                                            (Debian package `redis-server`).
#   scripts/ensure-test-deps.sh rabbitmq     RabbitMQ: a broker answering at $DSAR_TEST_RABBITMQ
#                                            (host:port) or 127.0.0.1:5672, or a
#                                            rabbitmq-server for the tests to start a throwaway
#                                            one (Debian package `rabbitmq-server`).
#   scripts/ensure-test-deps.sh browser      The browser tests (tests/support/browser.py):
#                                            Debian's `chromium` (Playwright drives it; its
#                                            own browser downloads are never used) and the
#                                            npm package axe-core, pinned below, fetched from
#                                            the npm registry with its integrity checked into
#                                            $VENV/axe-core/axe.min.js (VENV: .venv).
#   scripts/ensure-test-deps.sh              all five of the above.
#   scripts/ensure-test-deps.sh python-venv  Debian's python3-venv (for `python3 -m venv`).
#
# Installs with apt-get as root or through `sudo -n`; otherwise prints what to
# install and exits 1. Starts no service: tests/support/postgres.py,
# tests/support/mariadb.py, tests/support/redis.py and tests/support/rabbitmq.py do that.
set -euo pipefail

# axe-core for the browser tests' accessibility checks: the registry's tarball of this
# version, checked against the registry's integrity (SRI sha512) before it is unpacked.
AXE_VERSION=4.14.1
AXE_INTEGRITY=sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==
AXE_URL="https://registry.npmjs.org/axe-core/-/axe-core-${AXE_VERSION}.tgz"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AXE_DIR="${ROOT}/${VENV:-.venv}/axe-core"

APT_UPDATED=0

say() { printf '   %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 127
    fi
}

can_install() {
    [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }
}

apt_install() {
    # apt_install PKG...: install Debian packages, or explain and exit 1.
    if ! command -v apt-get >/dev/null 2>&1 || ! can_install; then
        echo "ensure-test-deps: missing: $*" >&2
        echo "ensure-test-deps: not root and no passwordless sudo: run as root:" >&2
        echo "    apt-get update && apt-get install -y $*" >&2
        exit 1
    fi
    say "installing Debian packages: $*"
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

answers() {
    # answers HOST:PORT: true if something accepts TCP connections there within 2 s.
    local host="${1%:*}" port="${1##*:}"
    timeout 2 bash -c "exec 3<>/dev/tcp/${host}/${port}" 2>/dev/null
}

have_pg_binaries() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
        || { command -v initdb && command -v pg_ctl && command -v postgres; } >/dev/null 2>&1
}

ensure_server() {
    # ensure_server NAME TARGET DEFAULT HAVE_BINARIES PACKAGE: a server answers at
    # TARGET (host:port; DEFAULT when unset), or its binaries are there for the
    # tests' throwaway server, or PACKAGE is installed. TARGET=start skips the probe.
    local name="$1" target="$2" default="$3" have="$4" package="$5"
    if [ "$target" != "start" ]; then
        local where="${target:-$default}"
        if answers "$where"; then
            say "$name: a server answers at $where"
            return
        fi
    fi
    if "$have"; then
        say "$name: server binaries present (the tests start a throwaway server)"
        return
    fi
    apt_install "$package"
    "$have" || { echo "ensure-test-deps: $package installed but its server was not found" >&2; exit 1; }
    say "$name: installed"
}

ensure_postgresql() {
    ensure_server postgresql "${DSAR_TEST_PG:-}" 127.0.0.1:5432 have_pg_binaries postgresql
}

have_mariadb_binaries() {
    local name
    for name in mariadbd mysqld; do
        command -v "$name" >/dev/null 2>&1 || [ -x "/usr/sbin/$name" ] || continue
        command -v mariadb-install-db >/dev/null 2>&1 \
            || command -v mysql_install_db >/dev/null 2>&1 || continue
        return 0
    done
    return 1
}

ensure_mariadb() {
    ensure_server mariadb "${DSAR_TEST_MARIADB:-}" 127.0.0.1:3306 have_mariadb_binaries mariadb-server
}

have_redis_binary() {
    command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || [ -x /usr/sbin/redis-server ]
}

ensure_redis() {
    ensure_server redis "${DSAR_TEST_REDIS:-}" 127.0.0.1:6379 have_redis_binary redis-server
}

have_rabbitmq_binary() {
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null 2>&1 \
        || [ -x /usr/sbin/rabbitmq-server ]
}

ensure_rabbitmq() {
    ensure_server rabbitmq "${DSAR_TEST_RABBITMQ:-}" 127.0.0.1:5672 have_rabbitmq_binary rabbitmq-server
}

have_chromium() {
    command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]
}

ensure_chromium() {
    # Debian's chromium, which Playwright launches by its path (`playwright install`
    # downloads from hosts the test machines cannot reach, and is never needed).
    if have_chromium; then
        say "chromium: $(command -v chromium || echo /usr/bin/chromium)"
        return
    fi
    apt_install chromium
    have_chromium || { echo "ensure-test-deps: chromium installed but not found" >&2; exit 1; }
    say "chromium: installed"
}

ensure_axe() {
    # $AXE_DIR/axe.min.js of $AXE_VERSION, downloaded when missing or of another version.
    if [ -s "$AXE_DIR/axe.min.js" ] && [ "$(cat "$AXE_DIR/version" 2>/dev/null)" = "$AXE_VERSION" ]; then
        say "axe-core: $AXE_VERSION in $AXE_DIR"
        return
    fi
    say "axe-core: fetching $AXE_VERSION from the npm registry"
    "${PYTHON:-python3}" - "$AXE_URL" "$AXE_INTEGRITY" "$AXE_DIR" "$AXE_VERSION" <<'PY' || exit 1
import base64, hashlib, io, sys, tarfile, urllib.request
from pathlib import Path
url, integrity, target, version = sys.argv[1:]
try:
    with urllib.request.urlopen(url, timeout=60) as answer:
        data = answer.read()
except OSError as exc:
    sys.exit(f"ensure-test-deps: cannot download {url}: {exc}")
algorithm, _, expected = integrity.partition("-")
got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
if got != expected:
    sys.exit(f"ensure-test-deps: {url}: integrity {algorithm}-{got}, expected {integrity}")
with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tgz:
    member = tgz.extractfile("package/axe.min.js")
    script = member.read() if member else b""
if not script:
    sys.exit(f"ensure-test-deps: {url} has no package/axe.min.js")
out = Path(target)
out.mkdir(parents=True, exist_ok=True)
(out / "axe.min.js.tmp").write_bytes(script)
(out / "axe.min.js.tmp").replace(out / "axe.min.js")
(out / "version").write_text(version + "\n")
PY
    say "axe-core: $AXE_VERSION in $AXE_DIR"
}

ensure_browser() {
    ensure_chromium
    ensure_axe
}

ensure_python_venv() {
    # Called by the Makefile when `python3 -m venv` failed (Debian ships venv apart).
    local py="${PYTHON:-python3}" ver
    ver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    apt_install "python${ver}-venv" python3-venv
    say "python${ver}: venv support installed"
}

case "${1:-all}" in
    all) ensure_postgresql; ensure_mariadb; ensure_redis; ensure_rabbitmq; ensure_browser ;;
    postgresql) ensure_postgresql ;;
    mariadb) ensure_mariadb ;;
    redis) ensure_redis ;;
    rabbitmq) ensure_rabbitmq ;;
    browser) ensure_browser ;;
    python-venv) ensure_python_venv ;;
    *) echo "usage: $0 [all|postgresql|mariadb|redis|rabbitmq|browser|python-venv]" >&2; exit 2 ;;
esac
