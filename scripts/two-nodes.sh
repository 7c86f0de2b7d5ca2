#!/usr/bin/env bash
# Two peerroom nodes on this machine, sharing Redis and one SQLite data directory:
# node 1 on :8081, node 2 on :8082 (and nginx on :8080 in front with --nginx).
# Ctrl-C stops everything this script started. See docs/deploy.md.
# Needs .venv (scripts/bootstrap makes it), curl, Redis answering, and nginx for --nginx.
#
#   scripts/two-nodes.sh [--nginx]
#   PEERROOM_REDIS_URL=redis://127.0.0.1:6379/0  (default)
#   PEERROOM_DATA_DIR=./data-two-nodes           (default; one SQLite file for both)
#   PYTHON=.venv/bin/python                      (default; one with peerroom installed)
set -euo pipefail
cd "$(dirname "$0")/.."

redis_url="${PEERROOM_REDIS_URL:-redis://127.0.0.1:6379/0}"
data_dir="${PEERROOM_DATA_DIR:-./data-two-nodes}"
python="${PYTHON:-.venv/bin/python}"
nginx="$(command -v nginx || echo /usr/sbin/nginx)"  # /usr/sbin is not on a user's PATH

missing=()
command -v curl >/dev/null || missing+=(curl)
if [ "${1:-}" = "--nginx" ] && [ ! -x "$nginx" ]; then missing+=(nginx); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/two-nodes.sh needs ${missing[*]}: scripts/apt-install ${missing[*]}" >&2
  exit 1
fi
if ! command -v "$python" >/dev/null; then
  echo "scripts/two-nodes.sh needs $python: run scripts/bootstrap first (or set PYTHON)" >&2
  exit 1
fi
mkdir -p "$data_dir"

pids=()
stop() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

up() {  # up PORT: wait until the node answers /healthz, at most 15 s
  for _ in $(seq 1 150); do
    curl -fsS "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the node on :$1 did not come up (is Redis answering at $redis_url?)" >&2
  exit 1
}

for port in 8081 8082; do
  # One at a time: the first creates the data directory's secrets and schema, the
  # second reads the same ones (every node must sign and check tokens alike).
  "$python" -m server serve --port "$port" --data-dir "$data_dir" --redis-url "$redis_url" &
  pids+=($!)
  up "$port"
done

if [ "${1:-}" = "--nginx" ]; then
  prefix="$(mktemp -d /tmp/peerroom-nginx.XXXXXX)"
  "$nginx" -p "$prefix" -c "$PWD/deploy/nginx.conf" -g "daemon off;" &
  pids+=($!)
  up 8080
  echo "nginx on http://127.0.0.1:8080/ in front of both nodes"
fi

echo "two nodes up: http://127.0.0.1:8081/ and http://127.0.0.1:8082/ (Ctrl-C stops them)"
echo "admin token: $(cat "$data_dir/admin_token" 2>/dev/null || echo "from PEERROOM_ADMIN_TOKEN")"
wait -n  # whichever stops first stops the rest
