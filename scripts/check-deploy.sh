#!/usr/bin/env bash
# Validates deploy/ against the Kubernetes schemas (kubernetes-validate, from
# PyPI via scripts/requirements.txt), checks the base's own promises
# (scripts/check_deploy_rules.py), and lints the public proto (buf, from
# npm). The kustomizations are also rendered and validated when kubectl is
# present. Part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

k8s_version=1.30.0
buf_version=1.75.0

mapfile -t manifests < <(find deploy -name '*.yaml' ! -name kustomization.yaml | sort)
python3 -m kubernetes_validate -k "$k8s_version" --strict --quiet "${manifests[@]}"
echo "check-deploy: ${#manifests[@]} manifests valid for Kubernetes $k8s_version" >&2
python3 scripts/check_deploy_rules.py

if command -v kubectl >/dev/null 2>&1; then
  rendered=$(mktemp -d)
  trap 'rm -rf "$rendered"' EXIT
  for dir in deploy/base deploy/overlays/*; do
    out="$rendered/$(echo "$dir" | tr / _).yaml"
    kubectl kustomize "$dir" 2>/dev/null >"$out"
    python3 -m kubernetes_validate -k "$k8s_version" --strict --quiet "$out"
  done
  echo "check-deploy: kustomizations render and validate" >&2
else
  echo "check-deploy: kubectl not installed; kustomizations not rendered" >&2
fi

tools=target/tools
if [ ! -x "$tools/node_modules/.bin/buf" ] || ! "$tools/node_modules/.bin/buf" --version | grep -qx "$buf_version"; then
  mkdir -p "$tools"
  npm install --silent --no-save --no-audit --no-fund --prefix "$tools" "@bufbuild/buf@$buf_version" >/dev/null
fi
"$tools/node_modules/.bin/buf" lint
echo "check-deploy: buf lint clean" >&2
