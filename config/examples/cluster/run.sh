#!/usr/bin/env bash
# The two-instance example: Redis on 127.0.0.1:6379 (append-only file on, in a temporary folder)
# and instances A (a.toml) and B (b.toml) of Portvakt sharing it. Ctrl-C stops all three.
# Build first (cargo build --release), or point PORTVAKT at a binary.
set -euo pipefail
cd "$(dirname "$0")"
bin=${PORTVAKT:-../../../target/release/portvakt}
[[ -x $bin ]] || { echo "run.sh: no binary at $bin: cargo build --release, or set PORTVAKT" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "run.sh: install redis-server (apt-get install redis-server)" >&2; exit 2; }
if redis-cli -p 6379 ping >/dev/null 2>&1; then
  echo "run.sh: something already answers on 127.0.0.1:6379; stop it first" >&2
  exit 2
fi
data=$(mktemp -d)
pids=()
stop() {
  kill "${pids[@]}" 2>/dev/null || true
  wait || true
  rm -rf "$data"
}
trap stop EXIT
trap 'exit 130' INT TERM
redis-server --port 6379 --bind 127.0.0.1 --dir "$data" --appendonly yes --appendfsync everysec --save "" \
  >"$data/redis.log" 2>&1 &
pids+=($!)
until redis-cli -p 6379 ping >/dev/null 2>&1; do sleep 0.1; done
"$bin" serve --config a.toml &
pids+=($!)
"$bin" serve --config b.toml &
pids+=($!)
for admin in 19901 19902; do
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
done
echo "run.sh: ready. A: gateway :18080, issuer :19000. B: gateway :18081, issuer :19001. Redis :6379."
wait
