#!/usr/bin/env bash
# Installs what rbuild's demo and tests need on a Debian machine, as root.
# Idempotent: does nothing (not even `apt-get update`) when all is present.
set -euo pipefail
# gcc and libc6-dev: the sandbox and ssh tests build static probes (what seccomp refuses,
# what an SSH agent answers). openssh-client: ssh-agent, ssh-add, ssh-keygen for --ssh.
# git: ADD of git repositories runs it (and its tests serve one with `git daemon`).
# debootstrap: the Debian bookworm base of the end-to-end test (tests/tests/debian.rs).
# g++: libFuzzer (C++) for the fuzz targets.
# qemu-user-static + binfmt-support: RUN steps for another architecture run through QEMU
# user emulation registered with binfmt_misc (tests/tests/platforms.rs).
# uidmap: newuidmap/newgidmap map a user's /etc/subuid, /etc/subgid ranges in rootless mode
# (tests/tests/rootless.rs).
pkgs=(busybox-static skopeo umoci docker-registry apache2-utils openssl curl python3 iproute2 gcc g++ libc6-dev openssh-client git debootstrap qemu-user-static binfmt-support uidmap)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# binfmt_misc: where the kernel keeps the emulators. qemu-user-static registers its
# handlers (with the F flag) when it is installed, which needs binfmt_misc mounted.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  echo "registering: qemu-aarch64 (binfmt_misc)" >&2
  update-binfmts --enable qemu-aarch64 || update-binfmts --import qemu-aarch64
fi
# An arm64 busybox for the multi-platform tests, without the internet: Debian's
# busybox-static for arm64, unpacked into a cache dir (tests/src/lib.rs reads it there).
arm64_busybox="${RBUILD_TEST_CACHE:-/var/cache/rbuild-test}/busybox-arm64"
if [ ! -x "$arm64_busybox/bin/busybox" ]; then
  echo "fetching: busybox-static:arm64 into $arm64_busybox" >&2
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
  fi
  apt-get update -qq
  tmp=$(mktemp -d) && chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq busybox-static:arm64)
  mkdir -p "$arm64_busybox"
  dpkg-deb -x "$tmp"/busybox-static_*_arm64.deb "$arm64_busybox"
  rm -rf "$tmp"
fi
# Debian's package starts a registry on :5000 as a service; tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
command -v cargo >/dev/null || { echo "cargo is required (rustup)" >&2; exit 1; }
# The fuzz targets (scripts/fuzz.sh): cargo-fuzz builds them with a nightly toolchain.
command -v rustup >/dev/null || { echo "rustup is required (the fuzz targets need nightly)" >&2; exit 1; }
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "installing: rust nightly toolchain" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing: cargo-fuzz" >&2
  cargo install --locked cargo-fuzz
fi
