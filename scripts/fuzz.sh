#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 20). cargo-fuzz needs nightly
# compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# A crash leaves its input under fuzz/artifacts/<target>/: keep it as a regression test in the
# decoder's crate, then fix the decoder.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-20}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in plausible ga4_mp ga4_gtag access_log query; do
  echo "== fuzz $target for ${seconds}s"
  mkdir -p "corpus/$target"
  cp -n seeds/"$target"/* "corpus/$target"/ 2>/dev/null || true
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=4096
done
