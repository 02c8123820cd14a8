#!/usr/bin/env bash
# Writes a build context of N small files (default 200,000; 1–2 KiB each, seeded, so every
# machine gets the same bytes) under DIR/src/dNNN/ (1,000 per directory) and a Dockerfile
# that copies them all and counts them. It measures how hashing, copying and layering scale
# with the number of files (issue 10), by hand or against BuildKit:
#
#   scripts/gen-many-files.sh /tmp/many-files
#   /usr/bin/time -v target/release/rbuild build -t many /tmp/many-files      # cold
#   /usr/bin/time -v target/release/rbuild build -t many /tmp/many-files      # no-op
#   echo x >> /tmp/many-files/src/d100/f100500; rbuild build -t many /tmp/many-files  # touch
#
# usage: gen-many-files.sh DIR [N] [BASE]   (BASE defaults to busybox:latest)
# A stamp beside DIR makes a re-run with the same N a no-op.
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 DIR [N] [BASE]" >&2
  exit 2
fi
dir=${1%/}
n=${2:-200000}
base=${3:-busybox:latest}
stamp="$dir.stamp"
want="many-files v1 seed=20261204 files=$n"
if [[ -d $dir && -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi
rm -rf "$dir" "$stamp"
mkdir -p "$dir/src"
python3 - "$dir/src" "$n" <<'PY'
import os, random, sys

root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(20261204)
pool = rng.randbytes(1 << 20)
for i in range(n):
    sub = os.path.join(root, f"d{i // 1000:03d}")
    if i % 1000 == 0:
        os.makedirs(sub, exist_ok=True)
    size = rng.randint(1024, 2048)
    off = rng.randrange(len(pool) - size)
    with open(os.path.join(sub, f"f{i:06d}"), "wb") as f:
        f.write(pool[off:off + size])
PY
cat >"$dir/Dockerfile" <<DF
ARG BASE=$base
FROM \${BASE}
COPY src /src
RUN find /src -type f | wc -l > /count
DF
echo "$want" >"$stamp"
