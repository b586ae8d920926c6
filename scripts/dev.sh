#!/usr/bin/env bash
# Runs the service on the embedded default: a local Temporal dev server (data
# in ./data/temporal.db) and the loyalty server with its SQLite ledger
# (./data/loyalty.db). Extra arguments go to `loyalty dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --locked -- dev "$@"
