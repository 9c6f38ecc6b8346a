#!/usr/bin/env bash
# Build the images the tests use, locally, from Debian packages (no registry is reachable):
#   interlink-test/busybox:1    busybox-static with its applets; CMD ["sh"]
#   interlink-test/pause:1      a static pause binary (infra container)
#   interlink-test/entrypoint:1 busybox with ENTRYPOINT/CMD set, for command/args semantics
#   interlink-test/broken:1     busybox whose CMD is missing (a container that cannot start)
# Images carry a label with the hash of this directory: an unchanged build is skipped.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(cat "$here/build.sh" "$here/pause.c" | sha256sum | cut -c1-16)"

current() {
  [ "$(docker image inspect -f '{{ index .Config.Labels "interlink.test.version" }}' "$1" 2>/dev/null)" = "$version" ]
}

if current interlink-test/busybox:1 && current interlink-test/pause:1 \
   && current interlink-test/entrypoint:1 && current interlink-test/broken:1; then
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# busybox: the static build from Debian's busybox-static package.
busybox=""
if [ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
  busybox=/bin/busybox
else
  if ! command -v apt-get >/dev/null; then
    echo "build.sh: need Debian's busybox-static (apt-get) to build test images" >&2; exit 1
  fi
  (cd "$work" && apt-get download busybox-static >/dev/null 2>&1) || {
    apt-get update -qq && (cd "$work" && apt-get download busybox-static >/dev/null); }
  dpkg -x "$work"/busybox-static_*.deb "$work/deb"
  busybox="$work/deb/bin/busybox"
fi

root="$work/rootfs"
mkdir -p "$root"/{bin,etc,tmp,root,home,var/www,proc,sys,dev}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\nuser:x:1000:100:user:/home:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\nusers:x:100:\nnogroup:x:65534:\n' > "$root/etc/group"
tar -C "$root" -cf "$work/busybox.tar" .

label="LABEL interlink.test.version=$version"
docker import --change "$label" --change 'ENV PATH=/bin' --change 'CMD ["sh"]' \
  "$work/busybox.tar" interlink-test/busybox:1 >/dev/null
docker import --change "$label" --change 'ENV PATH=/bin' \
  --change 'ENTRYPOINT ["/bin/echo", "from-entrypoint"]' --change 'CMD ["from-cmd"]' \
  "$work/busybox.tar" interlink-test/entrypoint:1 >/dev/null
docker import --change "$label" --change 'ENV PATH=/bin' --change 'CMD ["/bin/no-such-program"]' \
  "$work/busybox.tar" interlink-test/broken:1 >/dev/null

# pause: static C binary on an otherwise empty filesystem.
mkdir -p "$work/pause"
cc -static -O2 -o "$work/pause/pause" "$here/pause.c"
tar -C "$work/pause" -cf "$work/pause.tar" pause
docker import --change "$label" --change 'ENTRYPOINT ["/pause"]' \
  "$work/pause.tar" interlink-test/pause:1 >/dev/null
echo "build.sh: built test images (version $version)" >&2
