#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit, property and integration tests.
# Installs what the tests need (Prometheus, Alertmanager, pyarrow) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# pyarrow: tests/datasets_crash.rs reads every Parquet file we write with a second reader, and
# fails rather than skips that check when REQUIRE_PYARROW is set.
scripts/install-deps.sh --pyarrow
export REQUIRE_PYARROW=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --all-targets --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite (the last target to run is a benchmark smoke test).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
