#!/usr/bin/env bash
# Installs what rbuild's demo and tests need on a Debian machine, as root.
# Idempotent: does nothing (not even `apt-get update`) when all is present.
set -euo pipefail
# gcc and libc6-dev: the sandbox and ssh tests build static probes (what seccomp refuses,
# what an SSH agent answers). openssh-client: ssh-agent, ssh-add, ssh-keygen for --ssh.
# git: ADD of git repositories runs it (and its tests serve one with `git daemon`).
# debootstrap: the Debian bookworm base of the end-to-end test (tests/tests/debian.rs).
# g++: libFuzzer (C++) for the fuzz targets.
pkgs=(busybox-static skopeo umoci docker-registry apache2-utils openssl curl python3 iproute2 gcc g++ libc6-dev openssh-client git debootstrap)
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
