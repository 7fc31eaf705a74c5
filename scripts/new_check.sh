#!/usr/bin/env bash
# `make new-check`: what `make new` writes works. Two projects under new names, everything on
# and minimal (no example domain, webhooks, files, real-time events, worker, tracing or rate
# limiter); in each: its own `make lint typecheck test`, `make lock-check` (the minimal one's
# lock files were resolved again by the generator) and `make deploy-check`, a grep for the
# template's name (only the README's "Generated from" line may have it), and `make dev` until
# /readyz answers 200 on embedded PostgreSQL and Redis. Prints the time from generation to a
# tested service per variant.
#   NEW_CHECK_DIR       where the projects go (default: a fresh temporary folder, removed after)
#   NEW_CHECK_VARIANTS  "everything minimal" (default) or one of them
#   PYTEST_ARGS         passed on to each project's `make test` (default: none, serially as
#                       in `make test`; CI passes "-n 2")
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="${NEW_CHECK_DIR:-}"
if [ -z "${WORK}" ]; then
  WORK="$(mktemp -d)"
  trap 'rm -rf "${WORK}"' EXIT
fi
DEV_READY_SECONDS=120

say() { printf '\n== %s\n' "$*"; }

# The template's name, in any case, anywhere but the one note (file names included).
old_name_left() {
  local project=$1
  {
    grep -rniI --exclude-dir=.git --exclude-dir=.venv --exclude-dir=.tools \
      --exclude-dir=.mypy_cache --exclude-dir=.ruff_cache --exclude-dir=.pytest_cache \
      'keel' "${project}" | grep -v '^[^:]*/README.md:3:> Generated from Keel ' || true
    find "${project}" -path "${project}/.venv" -prune -o -iname '*keel*' -print
  }
}

free_port() {
  "${PYTHON}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ready() {  # exit 0 when /readyz on 127.0.0.1:$1 answers 200 within 2 s
  "${PYTHON}" - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=2) as answer:
    sys.exit(0 if answer.status == 200 else 1)
PY
}

# `make dev` in its own process group, /readyz polled for a bounded time, then all of it stopped.
dev_serves_ready() {
  local project=$1 port status=1 log
  port="$(free_port)"
  log="${project}.dev.log"
  setsid make -C "${project}" dev DEV_ARGS="--port ${port}" >"${log}" 2>&1 &
  local group=$!
  for _ in $(seq "${DEV_READY_SECONDS}"); do
    if ready "${port}"; then
      status=0
      break
    fi
    sleep 1
  done
  kill -TERM -- "-${group}" 2>/dev/null || true
  wait "${group}" 2>/dev/null || true
  if [ "${status}" -ne 0 ]; then
    echo "make dev: no 200 from /readyz on port ${port} within ${DEV_READY_SECONDS} s" >&2
    tail -n 40 "${log}" >&2
  fi
  return "${status}"
}

check_variant() {
  local variant=$1 name options project started
  case "${variant}" in
    everything) name=acme-orders; options=() ;;
    minimal) name=tiny-ledger; options=(--no-items --no-webhooks --no-files --no-realtime --no-worker --no-tracing --no-ratelimit) ;;
    *) echo "unknown variant: ${variant}" >&2; return 2 ;;
  esac
  project="${WORK}/${name}"
  started=${SECONDS}
  say "${variant}: generate ${name} ${options[*]}"
  (cd "${ROOT}" && "${PYTHON}" -m scripts.new "${name}" --output "${project}" --no-input "${options[@]}")
  say "${variant}: the template's name left in ${name}"
  local left
  left="$(old_name_left "${project}")"
  if [ -n "${left}" ]; then
    echo "${left}" >&2
    return 1
  fi
  say "${variant}: make lint typecheck test"
  make -C "${project}" lint typecheck
  make -C "${project}" test PYTEST_ARGS="--basetemp=${WORK}/${name}-pytest ${PYTEST_ARGS:-}"
  local tested=$((SECONDS - started))
  say "${variant}: make lock-check"
  make -C "${project}" lock-check
  say "${variant}: make deploy-check"
  make -C "${project}" deploy-check
  say "${variant}: make dev serves /readyz"
  dev_serves_ready "${project}"
  say "${variant}: generated to tested service in ${tested} s; all checks in $((SECONDS - started)) s"
}

for variant in ${NEW_CHECK_VARIANTS:-everything minimal}; do
  check_variant "${variant}"
done
