#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every crate's tests
# (unit, conformance, end-to-end with real namespaces, overlayfs, skopeo, umoci),
# then every fuzz target for a minute (scripts/fuzz.sh; RBUILD_FUZZ_SECONDS changes it).
# Run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The conformance fixtures are in shared/ beside the checkout; a clone made elsewhere (CI
# clones into /tmp/fresh) finds them beside the repository it was cloned from.
if [[ -z ${RBUILD_CONFORMANCE_DIR:-} ]]; then
  for base in "$PWD/.." "$(git config --get remote.origin.url 2>/dev/null || true)/.."; do
    if [[ -d $base/shared/conformance ]]; then
      RBUILD_CONFORMANCE_DIR=$(cd "$base/shared/conformance" && pwd)
      export RBUILD_CONFORMANCE_DIR
      break
    fi
  done
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --no-fail-fast 2>&1
scripts/fuzz.sh "${RBUILD_FUZZ_SECONDS:-60}"
