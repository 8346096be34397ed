#!/usr/bin/env bash
# Runs every test: the Rust unit and integration tests (real processes over loopback), then the
# end-to-end tests that start the real binary on the default config and drive it with
# independent Python client libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
cargo test --locked
cargo build --locked --bin portvakt
.venv/bin/python -m pytest -q tests/e2e
