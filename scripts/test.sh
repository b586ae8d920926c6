#!/usr/bin/env bash
# Everything CI checks: install, formatting, lints (warnings denied), the
# Kubernetes manifests and the proto (scripts/check-deploy.sh), then all
# tests against a real Temporal dev server and real ledgers: SQLite, and
# PostgreSQL (a throwaway server started here unless LOYALTY_TEST_POSTGRES_URL
# names one).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
scripts/check-deploy.sh

if [ -z "${LOYALTY_TEST_POSTGRES_URL:-}" ]; then
  pg_dir=$(mktemp -d /tmp/loyalty-pg.XXXXXX)
  trap 'scripts/postgres.sh stop "$pg_dir"' EXIT
  LOYALTY_TEST_POSTGRES_URL=$(scripts/postgres.sh start "$pg_dir")
  export LOYALTY_TEST_POSTGRES_URL
  echo "test: PostgreSQL at $LOYALTY_TEST_POSTGRES_URL" >&2
fi
# The CA of its certificate, for the PostgreSQL-over-TLS test (tests/ledger.rs).
if [ -n "${pg_dir:-}" ]; then export LOYALTY_TEST_POSTGRES_CA="$pg_dir/tls/ca.pem"; fi
rm -f target/tmp/faults-figures.txt
cargo test --locked
echo "fault suite figures (tests/faults.rs):"
cat target/tmp/faults-figures.txt
# The API suite once more with its ledger on PostgreSQL (the ledger suite covers both on its own).
LOYALTY_TEST_LEDGER=postgres cargo test --locked --test api
