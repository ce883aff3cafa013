#!/usr/bin/env bash
# Installs PostgreSQL server binaries and graphviz from the distribution when they are missing.
# Needs root (or sudo) only when something is missing.
set -euo pipefail

have_postgres() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
    || { command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; }
}
missing=()
have_postgres || missing+=(postgresql postgresql-client)
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if command -v apt-get >/dev/null 2>&1; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
elif command -v dnf >/dev/null 2>&1; then
  $sudo dnf install -y postgresql-server graphviz
elif command -v brew >/dev/null 2>&1; then
  brew install postgresql graphviz
else
  echo "cannot install ${missing[*]}: install them with your package manager" >&2
  exit 1
fi
