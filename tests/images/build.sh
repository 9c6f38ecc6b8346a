#!/usr/bin/env bash
# Build the images the tests use, locally, from Debian packages (no registry is reachable):
#   interlink-test/busybox:1    busybox-static with its applets; CMD ["sh"]
#   interlink-test/pause:1      a static pause binary (infra container)
#   interlink-test/entrypoint:1 busybox with ENTRYPOINT/CMD set, for command/args semantics
#   interlink-test/broken:1     busybox whose CMD is missing (a container that cannot start)
#   interlink-test/python:3.11  Debian bookworm (minbase) with python3.11, `python` -> python3,
#                               bash and nginx; CMD ["python3"] (stands in for python:*-alpine)
#   interlink-test/nginx:1      the same root filesystem; CMD nginx in the foreground
# Images carry a label with the hash of this directory: an unchanged build is skipped.
# The Debian root filesystem comes from debootstrap (which needs root and deb.debian.org) and is
# cached as a tarball in $INTERLINK_TEST_IMAGE_CACHE (default /var/cache/interlink-test-images),
# keyed by the hash of its recipe, so editing this script does not bootstrap Debian again.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(cat "$here/build.sh" "$here/pause.c" | sha256sum | cut -c1-16)"

current() {
  [ "$(docker image inspect -f '{{ index .Config.Labels "interlink.test.version" }}' "$1" 2>/dev/null)" = "$version" ]
}

if current interlink-test/busybox:1 && current interlink-test/pause:1 \
   && current interlink-test/entrypoint:1 && current interlink-test/broken:1 \
   && current interlink-test/python:3.11 && current interlink-test/nginx:1; then
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
. "$here/../need-cc.sh"
"${CC:-gcc}" -static -O2 -o "$work/pause/pause" "$here/pause.c"
tar -C "$work/pause" -cf "$work/pause.tar" pause
docker import --change "$label" --change 'ENTRYPOINT ["/pause"]' \
  "$work/pause.tar" interlink-test/pause:1 >/dev/null
# python and nginx: a minimal Debian root filesystem from Debian's own packages.
debian_suite=bookworm
debian_mirror=http://deb.debian.org/debian
debian_packages=python3-minimal,python3.11,nginx

strip_rootfs() {  # what a container never needs: apt state, docs, man pages, locales, logs
  local r="$1"
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
    "$r"/var/log/* "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* \
    "$r"/usr/share/locale/* "$r"/usr/share/lintian "$r"/usr/share/common-licenses \
    "$r"/dev/* "$r"/proc/* "$r"/sys/* "$r"/run/* "$r"/tmp/*
  find "$r"/usr/lib/python3* -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true
  ln -sf python3 "$r"/usr/bin/python  # as in the official python images (python-is-python3)
  chmod 1777 "$r"/tmp
}

debian_key="$(printf '%s\n' "$debian_suite" "$debian_mirror" "$debian_packages" \
  "$(declare -f strip_rootfs)" | sha256sum | cut -c1-16)"
cache="${INTERLINK_TEST_IMAGE_CACHE:-/var/cache/interlink-test-images}"
debian_tar="$cache/debian-$debian_suite-$debian_key.tar"
if [ ! -s "$debian_tar" ]; then
  if ! command -v debootstrap >/dev/null; then
    if ! command -v apt-get >/dev/null; then
      echo "build.sh: need Debian's debootstrap (apt-get) to build the python image" >&2; exit 1
    fi
    apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
  fi
  echo "build.sh: bootstrapping Debian $debian_suite with $debian_packages (cached afterwards)" >&2
  debootstrap --variant=minbase --include="$debian_packages" "$debian_suite" "$work/debian" \
    "$debian_mirror" > "$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2; echo "build.sh: debootstrap failed" >&2; exit 1; }
  strip_rootfs "$work/debian"
  mkdir -p "$cache"
  tar -C "$work/debian" --numeric-owner -cf "$debian_tar.$$" .
  mv -f "$debian_tar.$$" "$debian_tar"  # atomic: a concurrent build sees all or nothing
fi
debian_env='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
docker import --change "$label" --change "$debian_env" --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' "$debian_tar" interlink-test/python:3.11 >/dev/null
docker import --change "$label" --change "$debian_env" --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["nginx", "-g", "daemon off;"]' \
  "$debian_tar" interlink-test/nginx:1 >/dev/null
echo "build.sh: built test images (version $version)" >&2
