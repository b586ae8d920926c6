#!/usr/bin/env bash
# Benchmarks the service on this machine: starts a Temporal dev server
# (file-backed unless BENCH_DEV_SERVER=memory) and a release build of
# `loyalty serve` with a SQLite ledger, runs `loyalty bench` against them and
# writes bench-results/{results.json,chart.svg}. Extra arguments go to
# `loyalty bench` (see `loyalty bench --help`), e.g. a quick run:
#   scripts/bench.sh --backlog 500 --reference-backlog 200 --memory-accounts 1000
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo build --release --locked

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

temporal="$(python3 -c "import sysconfig; print(sysconfig.get_path('scripts'))")/temporal"
temporal_port=$(free_port)
storage="file-backed (SQLite)"
db_args=(--db-filename "$work/temporal.db")
if [[ "${BENCH_DEV_SERVER:-file}" == memory ]]; then
    storage="in-memory"
    db_args=()
fi
"$temporal" server start-dev --ip 127.0.0.1 --port "$temporal_port" --headless --namespace default \
    --log-level error "${db_args[@]}" >"$work/temporal.log" 2>&1 &
pids+=($!)
wait_port "$temporal_port"

# The benchmark is the webhook endpoint (it reports delivery at mixed load).
hook_port=$(free_port)
hook_secret="whsec_$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"
printf '{"endpoints": [{"name": "bench", "url": "http://127.0.0.1:%s/hook", "secrets": ["%s"]}]}' \
    "$hook_port" "$hook_secret" >"$work/webhooks.json"

grpc_port=$(free_port)
LOYALTY_WEBHOOKS_FILE="$work/webhooks.json" \
LOYALTY_EARNING_RULES_FILE="${BENCH_EARNING_RULES:-docs/earning-rules.example.yaml}" \
LOYALTY_GRPC_ADDR="127.0.0.1:$grpc_port" \
TEMPORAL_ADDRESS="127.0.0.1:$temporal_port" \
LOYALTY_DATABASE_URL="sqlite:$work/loyalty.db" \
LOYALTY_MAX_CACHED_ACCOUNTS=12000 \
RUST_LOG=warn \
    target/release/loyalty serve >"$work/service.log" 2>&1 &
service=$!
pids+=($service)
wait_port "$grpc_port"

RUST_LOG="${RUST_LOG:-warn}" target/release/loyalty bench --server "http://127.0.0.1:$grpc_port" --temporal-address "127.0.0.1:$temporal_port" \
    --service-pid "$service" --temporal-pid "${pids[0]}" --dev-server-storage "$storage" --bench-database-url "sqlite:$work/bench-ledger.db" \
    --webhook-port "$hook_port" "$@"
