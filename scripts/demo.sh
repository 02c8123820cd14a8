#!/usr/bin/env bash
# The main job end to end: build a busybox base image from Debian's busybox-static,
# build the multi-stage example on it (RUN in two stages, COPY --from), run the result.
# Run as root on Debian. RBUILD_ROOT picks the store (default: a fresh temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --quiet -p rbuild
rb=$PWD/target/release/rbuild
export RBUILD_ROOT=${RBUILD_ROOT:-$(mktemp -d /tmp/rbuild-demo.XXXXXX)}
echo "store: $RBUILD_ROOT" >&2

# The base image: FROM scratch + the static busybox binary from the host.
base_ctx=$(mktemp -d)
trap 'rm -rf "$base_ctx"' EXIT
cp examples/busybox-base/Dockerfile "$base_ctx/"
cp /bin/busybox "$base_ctx/busybox"
"$rb" build --progress=plain -t busybox:latest "$base_ctx"

"$rb" build --progress=plain -t hello:latest examples/hello
"$rb" images
"$rb" run --rm hello:latest
