#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server from the Debian packages (installed by
# scripts/setup.sh) for the tests, and prints its URL on stdout.
#   scripts/postgres.sh start <dir>   initdb + start on a free port in <dir>
#   scripts/postgres.sh stop <dir>    stop it and remove <dir>
#   scripts/postgres.sh pause <dir>   stop it, keeping its data (an outage)
#   scripts/postgres.sh resume <dir>  start it again on the same port
# Data is not fsynced: it is a test server. As root, the server runs as the
# `postgres` user, because PostgreSQL refuses to run as root.
# TLS is on, with a certificate for 127.0.0.1 and localhost signed by a
# throwaway CA: <dir>/tls/ca.pem is what clients verify it with
# (`sslmode=verify-full&sslrootcert=<dir>/tls/ca.pem`); plaintext is still
# accepted, so the URL printed works as it is.
set -euo pipefail

usage="usage: postgres.sh start|stop|pause|resume <dir>"
action=${1:?$usage}
dir=${2:?$usage}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

run_server() {
  local tls="-c ssl=on -c ssl_cert_file=$dir/tls/server.pem -c ssl_key_file=$dir/tls/server.key"
  as_owner "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 \
    -o "-p $1 -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=300 $tls" \
    start >/dev/null || { cat "$dir/data/server.log" >&2; exit 1; }
}

# A CA and a server certificate it signs, for 127.0.0.1 and localhost.
make_certificates() {
  local tls="$dir/tls"
  mkdir -p "$tls"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$tls/ca.key" -out "$tls/ca.pem" -days 30 \
    -subj /CN=loyalty-test-postgres-ca 2>/dev/null
  openssl req "${ec[@]}" -keyout "$tls/server.key" -out "$tls/server.csr" -subj /CN=localhost 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$tls/server.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -out "$tls/server.pem" -days 30 -extfile "$tls/server.ext" 2>/dev/null
  # PostgreSQL refuses a key others can read.
  chmod 600 "$tls/server.key"
  [ "$(id -u)" -eq 0 ] && chown -R postgres "$tls"
  return 0
}

case "$action" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$pg_bin/initdb" -D "$dir/data" -U loyalty --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    make_certificates
    run_server "$port"
    echo "postgres://loyalty@127.0.0.1:$port/postgres"
    ;;
  pause)
    as_owner "$pg_bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  resume)
    run_server "$(cat "$dir/port")"
    ;;
  stop)
    if [ -d "$dir/data" ]; then
      as_owner "$pg_bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "$usage" >&2
    exit 2
    ;;
esac
