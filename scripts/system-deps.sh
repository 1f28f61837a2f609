#!/usr/bin/env bash
# System packages the tests use: bubblewrap (the grading sandbox), PostgreSQL (the PostgreSQL
# gradebook test) and Chromium (formgrader and the reports in a real browser). Installed when
# missing and possible (root with apt-get); otherwise the tests that need them skip and say why.
# Never fatal.
set -u

missing=()
have() { [ -x "$1" ] || command -v "$1" >/dev/null 2>&1; }
have bwrap || missing+=("bubblewrap:grading sandbox")
have /usr/bin/chromium || missing+=("chromium:formgrader and reports in a real browser")
# Debian keeps initdb and pg_ctl in /usr/lib/postgresql/<version>/bin, out of PATH.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || have initdb \
    || missing+=("postgresql:PostgreSQL gradebook")

[ ${#missing[@]} = 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    for entry in "${missing[@]}"; do
        package=${entry%%:*}
        echo "installing $package (${entry#*:})"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null 2>&1 \
            || echo "could not install $package: the ${entry#*:} tests will skip"
    done
else
    for entry in "${missing[@]}"; do
        echo "${entry%%:*} missing and not root: 'apt-get install ${entry%%:*}' for the ${entry#*:} tests"
    done
fi
exit 0
