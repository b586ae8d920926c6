#!/usr/bin/env bash
# Everything CI checks: install, formatting, lints (warnings denied), then all
# tests against a real Temporal dev server and a real SQLite ledger.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
