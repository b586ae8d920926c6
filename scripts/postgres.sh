#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server from the Debian packages (installed by
# scripts/setup.sh) for the tests, and prints its URL on stdout.
#   scripts/postgres.sh start <dir>   initdb + start on a free port in <dir>
#   scripts/postgres.sh stop <dir>    stop it and remove <dir>
# Data is not fsynced: it is a test server. As root, the server runs as the
# `postgres` user, because PostgreSQL refuses to run as root.
set -euo pipefail

action=${1:?usage: postgres.sh start|stop <dir>}
dir=${2:?usage: postgres.sh start|stop <dir>}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$pg_bin/initdb" -D "$dir/data" -U loyalty --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=300" \
      start >/dev/null || { cat "$dir/data/server.log" >&2; exit 1; }
    echo "postgres://loyalty@127.0.0.1:$port/postgres"
    ;;
  stop)
    if [ -d "$dir/data" ]; then
      as_owner "$pg_bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: postgres.sh start|stop <dir>" >&2
    exit 2
    ;;
esac
