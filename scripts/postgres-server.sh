#!/usr/bin/env bash
# A private PostgreSQL server for tests and benchmarks: its own temporary directory, an
# unprivileged user, loopback only, a free port.
#   scripts/postgres-server.sh start   prints the SQLAlchemy URL of its `postgres` database;
#                                      the data directory is on stderr ("PostgreSQL data in DIR")
#   scripts/postgres-server.sh restart DIR   (a fast restart: open connections are cut)
#   scripts/postgres-server.sh stop DIR
set -euo pipefail
cd /  # the server runs as another user, who may not enter the caller's directory

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bindir" ] && [ -x "$bindir/initdb" ] || { echo "PostgreSQL is not installed (apt-get install -y postgresql)" >&2; exit 1; }
# initdb refuses to run as root: then the server runs as the `postgres` user Debian's package creates.
as_owner=()
[ "$(id -u)" = 0 ] && as_owner=(runuser -u postgres --)

# German server messages for tests that set lc_messages (errors must be told apart by code, not words):
# the locale is built into the server's own directory, found through LOCPATH, when the machine has its source.
use_locale() { [ -d "$1/locale/de_DE.UTF-8" ] && export LOCPATH="$1/locale"; return 0; }

case "${1:-start}" in
restart)
  use_locale "$(dirname "$2")"
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$2" -m fast -w restart >/dev/null
  ;;
stop)
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$2" -m immediate stop >/dev/null
  rm -rf "$(dirname "$2")"
  ;;
start)
  dir=$(mktemp -d /tmp/verdicts-pg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${as_owner[@]}" "$bindir/initdb" -D "$dir/data" -U verdicts -A trust --no-sync -E UTF8 >"$dir/initdb.log"
  if [ -d /usr/share/i18n/locales ] && command -v localedef >/dev/null; then
    mkdir -p "$dir/locale"
    localedef -i de_DE -f UTF-8 "$dir/locale/de_DE.UTF-8" >/dev/null 2>&1 || true  # warnings exit 1
    use_locale "$dir"
  fi
  # Durability is not what the tests measure: fsync off keeps a database-per-test run quick.
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
    "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null
  echo "PostgreSQL data in $dir/data" >&2
  echo "postgresql+psycopg://verdicts@127.0.0.1:$port/postgres"
  ;;
*) echo "usage: $0 start | restart DIR | stop DIR" >&2; exit 2 ;;
esac
