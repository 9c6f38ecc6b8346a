#!/usr/bin/env bash
# Build the fake NVML library (fake_nvml.c) as <dir>/libnvidia-ml.so.1, soname libnvidia-ml.so.1,
# and print its path. Skipped when <dir> already holds a build of the same sources.
#   usage: tests/gpu/build.sh <dir>
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build.sh <dir>}"
mkdir -p "$out"
lib="$out/libnvidia-ml.so.1"
hash="$(cat "$here/build.sh" "$here/fake_nvml.c" | sha256sum | cut -c1-16)"
if [ -f "$lib" ] && [ "$(cat "$lib.hash" 2>/dev/null)" = "$hash" ]; then
  echo "$lib"; exit 0
fi
tmp="$(mktemp "$out/.build.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
. "$here/../need-cc.sh"
"${CC:-gcc}" -shared -fPIC -O2 -Wall -Wextra -Werror -Wl,-soname,libnvidia-ml.so.1 \
  -o "$tmp" "$here/fake_nvml.c" -lpthread
chmod 0755 "$tmp"
mv -f "$tmp" "$lib"   # atomic: a concurrent build or a loader never sees half a file
echo "$hash" > "$lib.hash"
echo "$lib"
