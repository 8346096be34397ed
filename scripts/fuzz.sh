#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 600), one after the other,
# then minimises each target's corpus in place (cargo fuzz cmin). New inputs go to
# fuzz/corpus/<target>/, failing inputs to fuzz/artifacts/<target>/: commit both, and
# `cargo test --test fuzz_corpora` replays them. Logs: fuzz/target/logs/<target>.log.
#
#   scripts/fuzz.sh [SECONDS]
#
# cargo-fuzz passes -Zsanitizer=address and other -Z flags; on the stable toolchain that needs
# RUSTC_BOOTSTRAP=1, set here. Every target is run even if one fails; the exit status says
# whether any did.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
export RUSTC_BOOTSTRAP=1
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

targets=$(cargo fuzz list)
nice -n 10 cargo fuzz build
mkdir -p fuzz/target/logs
failed=()
for target in $targets; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  echo "fuzz: $target for ${seconds}s"
  if ! nice -n 10 cargo fuzz run "$target" -- -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
    >"fuzz/target/logs/$target.log" 2>&1; then
    failed+=("$target")
    echo "fuzz: $target FAILED, see fuzz/target/logs/$target.log and fuzz/artifacts/$target/"
  fi
  grep -aE '^#[0-9]+[[:space:]]+DONE' "fuzz/target/logs/$target.log" || tail -n 3 "fuzz/target/logs/$target.log"
  # cmin renames what it keeps by content; the hand-written seed-* inputs are kept by name.
  seeds=$(mktemp -d)
  cp "fuzz/corpus/$target"/seed-* "$seeds"/ 2>/dev/null || true
  nice -n 10 cargo fuzz cmin "$target" >"fuzz/target/logs/$target.cmin.log" 2>&1 \
    || echo "fuzz: cmin of $target failed, see fuzz/target/logs/$target.cmin.log"
  cp "$seeds"/* "fuzz/corpus/$target"/ 2>/dev/null || true
  rm -rf "$seeds"
  echo "fuzz: $target corpus: $(find "fuzz/corpus/$target" -type f | wc -l) inputs"
done
if ((${#failed[@]})); then
  echo "fuzz: failing targets: ${failed[*]}"
  exit 1
fi
echo "fuzz: every target ran ${seconds}s without a finding"
