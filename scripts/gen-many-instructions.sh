#!/usr/bin/env bash
# Writes a build context whose Dockerfile has N instructions in one stage, two in three
# of them ENV (the environment grows to ~2N/3 variables), the rest small steps: RUNs that
# check a variable (they write nothing, so they add no layer) and, every COPY_EVERY-th
# small step, a COPY of a small file (a layer each). It measures lowering and keying at
# scale (issue 10: cost linear in the Dockerfile's size):
#
#   scripts/gen-many-instructions.sh 10000 /tmp/many
#   /usr/bin/time -v target/release/rbuild build --dry-run /tmp/many
#
# usage: gen-many-instructions.sh N DIR [BASE]   (BASE defaults to busybox:latest)
#        COPY_EVERY=50 by default; 0 means no COPY at all.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 N DIR [BASE]" >&2
  exit 2
fi
n=$1
dir=$2
base=${3:-busybox:latest}
copy_every=${COPY_EVERY:-50}
mkdir -p "$dir/files"
awk -v n="$n" -v base="$base" -v every="$copy_every" -v dir="$dir" '
BEGIN {
  print "FROM " base
  small = 0
  for (i = 1; i < n; i++) {
    g = int((i - 1) / 3)
    if ((i - 1) % 3 == 0) {
      printf "ENV V%d_A=value-%d\n", g, g
    } else if ((i - 1) % 3 == 1) {
      printf "ENV V%d_B=${V%d_A}-b\n", g, g
    } else {
      small++
      if (every > 0 && small % every == 0) {
        f = sprintf("f%d", small)
        printf "%s\n", small > (dir "/files/" f)
        close(dir "/files/" f)
        printf "COPY files/%s /data/%s\n", f, f
      } else {
        printf "RUN test \"$V%d_B\" = value-%d-b\n", g, g
      }
    }
  }
}' >"$dir/Dockerfile"
