#!/usr/bin/env bash
# The node engine end to end on this machine: a private containerd (own socket, root and
# state under a temp dir, stopped by PID at the end) with sample images — a shared base
# layer, tag aliases, a digest-only image, one image used by a running container — then
# `imagecleaner node plan` and `imagecleaner node clean`, and what was freed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --quiet --bin imagecleaner --bin imagecleaner-devnode

work=$(mktemp -d /tmp/imagecleaner-demo.XXXXXX)
devnode_pid=
cleanup() {
  if [[ -n "$devnode_pid" ]] && kill -0 "$devnode_pid" 2>/dev/null; then
    kill -TERM "$devnode_pid"
    wait "$devnode_pid" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

target/debug/imagecleaner-devnode >"$work/ready.json" 2>"$work/devnode.log" &
devnode_pid=$!
for _ in $(seq 1 600); do
  [[ -s "$work/ready.json" ]] && break
  kill -0 "$devnode_pid" 2>/dev/null || { cat "$work/devnode.log" >&2; exit 1; }
  sleep 0.1
done
[[ -s "$work/ready.json" ]] || { echo "demo: the sample node did not come up" >&2; cat "$work/devnode.log" >&2; exit 1; }
endpoint=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["runtime_endpoint"])' <"$work/ready.json")

run() { echo; echo "\$ imagecleaner $*"; target/debug/imagecleaner "$@"; }
echo "A private containerd is serving sample images at $endpoint."
echo "They were imported seconds ago, so they count as just pulled: --min-unused 0 lets"
echo "the plan treat them as old; registry.local:5000/cache/* is excluded."
common=(--runtime-endpoint "$endpoint" --state-dir "$work/state" --min-unused 0
        --exclude 'registry.local:5000/cache/*')
run node plan "${common[@]}"
run node clean "${common[@]}"
run node plan "${common[@]}"
