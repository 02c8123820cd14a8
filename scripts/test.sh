#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every crate's tests
# (unit, conformance, end-to-end with real namespaces, overlayfs, skopeo, umoci).
# Run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --no-fail-fast 2>&1
