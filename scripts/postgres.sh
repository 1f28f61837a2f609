#!/usr/bin/env bash
# A throwaway PostgreSQL server for the gradebook tests (and for trying a PostgreSQL gradebook).
#
#   scripts/postgres.sh start [DIR]   cluster in DIR (default: a new temp dir), on 127.0.0.1 and
#                                     a free port; prints the database URL (no password) as its
#                                     last line; the role's password is in DIR/password (mode 600)
#   scripts/postgres.sh stop DIR      stops the server and deletes DIR
#
# TCP connections need the password (scram-sha-256), as a real server would; only the owner's Unix
# socket inside DIR is trusted. It listens on 127.0.0.1 only: it is for tests and trials, not for
# a course's real gradebook. PostgreSQL refuses to run as root, so as root the
# server runs as an unprivileged user (PG_USER, default nobody), and the Debian `postgresql`
# package is installed first when it is missing. Exit status 3: PostgreSQL is not available.
set -euo pipefail

PG_USER=${PG_USER:-nobody}
DB_NAME=${PG_DB:-tdkit}
DB_ROLE=tdkit

find_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir=$(pg_config --bindir 2>/dev/null || true)
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
    fi
    # Debian keeps the server binaries out of PATH, one directory per major version.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"; return 0
    fi
    return 1
}

bindir() {
    local dir
    if dir=$(find_bindir); then echo "$dir"; return 0; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing postgresql (Debian package)" >&2
        apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 || true
        if dir=$(find_bindir); then echo "$dir"; return 0; fi
    fi
    echo "PostgreSQL server binaries (initdb, pg_ctl) not found; install the 'postgresql' package" >&2
    exit 3
}

# Run a command as the server's owner: ourselves, or PG_USER when we are root.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local bin dir port
    bin=$(bindir)
    dir=${1:-$(mktemp -d "${TMPDIR:-/tmp}/tdkit-pg.XXXXXX")}
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown "$PG_USER" "$dir"
        chmod 700 "$dir"
        # The owner must be able to reach DIR: every parent needs o+x (a 0700 pytest tmp does not).
        if ! runuser -u "$PG_USER" -- test -w "$dir"; then
            echo "$PG_USER cannot write $dir (a parent directory is not searchable); use a DIR under /tmp" >&2
            exit 2
        fi
    fi
    port=${PG_PORT:-$(free_port)}
    cd "$dir"  # the owner may not be allowed into the caller's cwd
    # A random password for the role, readable by the server's owner only (never in a URL or a log).
    (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$dir/password")
    if [ "$(id -u)" = 0 ]; then chown "$PG_USER" "$dir/password"; fi
    as_owner "$bin/initdb" -D "$dir/data" -U "$DB_ROLE" --auth-local=trust --auth-host=scram-sha-256 \
        --pwfile="$dir/password" -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    # TCP on loopback only; the Unix socket goes inside DIR (not /var/run/postgresql).
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off" start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$bin/createdb" -h "$dir" -p "$port" -U "$DB_ROLE" "$DB_NAME"
    local url="postgresql://$DB_ROLE@127.0.0.1:$port/$DB_NAME"
    echo "$url" >"$dir/url"
    echo "PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') in $dir (password: $dir/password; stop: $0 stop $dir)" >&2
    echo "$url"
}

stop() {
    local dir=${1:?usage: $0 stop DIR}
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$(bindir)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    *) echo "usage: $0 start [DIR] | stop DIR" >&2; exit 2 ;;
esac
