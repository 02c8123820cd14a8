#!/usr/bin/env bash
# The main job end to end: build a busybox base image from Debian's busybox-static,
# build the multi-stage example on it (RUN in two stages, COPY --from), run the result,
# push it to a registry started here on loopback, and run it back from that registry
# in a fresh store. Run as root on Debian. RBUILD_ROOT picks the store (default: temp).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --quiet -p rbuild
rb=${CARGO_TARGET_DIR:-$PWD/target}/release/rbuild
export RBUILD_ROOT=${RBUILD_ROOT:-$(mktemp -d /tmp/rbuild-demo.XXXXXX)}
echo "store: $RBUILD_ROOT" >&2

work=$(mktemp -d)
regpid=
cleanup() {
  local rc=$?
  if [[ -n $regpid ]]; then
    kill "$regpid" 2>/dev/null || true
    wait "$regpid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# The base image: FROM scratch + the static busybox binary from the host.
mkdir "$work/base"
cp examples/busybox-base/Dockerfile "$work/base/"
cp /bin/busybox "$work/base/busybox"
"$rb" build --progress=plain -t busybox:latest "$work/base"

"$rb" build --progress=plain -t hello:latest examples/hello
"$rb" images
"$rb" run --rm hello:latest

# A registry on a free loopback port, storage in the temp dir.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
regpid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done

ref=127.0.0.1:$port/hello:latest
"$rb" tag hello:latest "$ref"
"$rb" push "$ref"
# A fresh store: the run pulls the image from the registry first.
RBUILD_ROOT=$work/fresh-store "$rb" run --rm "$ref"
