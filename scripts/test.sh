#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit, property and integration tests.
# Installs what the tests need (Prometheus, Alertmanager) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/install-deps.sh ]; then
  scripts/install-deps.sh
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --all-targets
