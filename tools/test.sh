#!/usr/bin/env bash
# Set up, then run the whole test suite: formatting, lints, unit and integration tests.
# The integration tests need root (device nodes, owners, loop mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --release --locked -- --test-threads=2
