#!/usr/bin/env bash
# Build the images the tests use, locally, from Debian packages (no registry is reachable):
#   interlink-test/busybox:1    busybox-static with its applets; CMD ["sh"]
#   interlink-test/pause:1      a static pause binary (infra container)
#   interlink-test/entrypoint:1 busybox with ENTRYPOINT/CMD set, for command/args semantics
#   interlink-test/broken:1     busybox whose CMD is missing (a container that cannot start)
#   interlink-test/python:3.11  Debian bookworm (minbase) with python3.11 and its venv module
#                               (ensurepip, as the image Dockerfile needs), `python` -> python3,
#                               bash and nginx; CMD ["python3"] (stands in for python:*-alpine)
#   interlink-test/nginx:1      the same root filesystem; CMD nginx in the foreground
#   interlink-test/singleuser:1 the python image with JupyterHub's single-user server
#                               (jupyterhub-singleuser, jupyter_server; singleuser-requirements.txt)
#                               as uid 1000 (jovyan, gid 100 users, HOME /home/jovyan);
#                               CMD ["jupyterhub-singleuser"] (stands in for jupyter/base-notebook)
#   interlink-test/tunnel:1     the python image with tests/tunnel/tunnel_client.py as
#                               /usr/local/bin/interlink-test-tunnel (a tunnel companion's image)
# Images carry a label with the hash of this directory: an unchanged build is skipped.
# The Debian root filesystem comes from debootstrap (which needs root and deb.debian.org) and is
# cached as a tarball in $INTERLINK_TEST_IMAGE_CACHE (default /var/cache/interlink-test-images),
# keyed by the hash of its recipe, so editing this script does not bootstrap Debian again.
# The single-user server's packages come from PyPI (binary wheels only, installed by the host's
# pip for the image's CPython 3.11) and are cached there too, keyed by the requirements and pip's
# options. Set PYTHON to choose the host's python that runs pip (default python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tunnel_client="$here/../tunnel/tunnel_client.py"
version="$(cat "$here/build.sh" "$here/pause.c" "$here/singleuser-requirements.txt" \
  "$tunnel_client" | sha256sum | cut -c1-16)"

current() {
  [ "$(docker image inspect -f '{{ index .Config.Labels "interlink.test.version" }}' "$1" 2>/dev/null)" = "$version" ]
}

if current interlink-test/busybox:1 && current interlink-test/pause:1 \
   && current interlink-test/entrypoint:1 && current interlink-test/broken:1 \
   && current interlink-test/python:3.11 && current interlink-test/nginx:1 \
   && current interlink-test/singleuser:1 && current interlink-test/tunnel:1; then
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
debian_packages=python3-minimal,python3.11,python3.11-venv,python3-distutils,python3-lib2to3,nginx

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

# singleuser: JupyterHub's single-user server on the python image. Its packages are installed on
# this host by pip into a directory, as binary wheels for the image's python (CPython 3.11,
# glibc 2.36), and go to /usr/local, which Debian's python3.11 searches.
su_requirements="$here/singleuser-requirements.txt"
arch="$(uname -m)"  # the engine runs images of this machine's architecture (x86_64, aarch64)
su_pip_options=(--no-compile --no-warn-script-location --only-binary=:all: --implementation cp
  --python-version 3.11 --abi cp311 --platform "manylinux2014_$arch")
for glibc_minor in $(seq 17 36); do  # manylinux_2_17 .. manylinux_2_36 (bookworm's glibc)
  su_pip_options+=(--platform "manylinux_2_${glibc_minor}_$arch")
done

singleuser_tree() {  # pip's target $1 laid out as the image's /usr/local in $2
  local t="$1" d="$2"
  # bin/ has scripts with this host's shebangs (the image gets its own); share/jupyterhub holds
  # the hub's web assets (60 MB), which the single-user server does not use; no bytecode.
  rm -rf "$t"/bin "$t"/share/jupyterhub
  find "$t" -name __pycache__ -prune -exec rm -rf {} +
  mkdir -p "$d"/lib/python3.11
  [ ! -d "$t"/share ] || mv "$t"/share "$d"/share  # data files: /usr/local/share/jupyter
  [ ! -d "$t"/etc ] || mv "$t"/etc "$d"/etc        # config: /usr/local/etc/jupyter
  mv "$t" "$d"/lib/python3.11/dist-packages
}

su_key="$(printf '%s\n' "$(cat "$su_requirements")" "${su_pip_options[*]}" \
  "$(declare -f singleuser_tree)" | sha256sum | cut -c1-16)"
su_tar="$cache/singleuser-packages-$su_key.tar"
if [ ! -s "$su_tar" ]; then
  python="${PYTHON:-python3}"
  if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "build.sh: need pip ($python -m pip) to build the singleuser image" >&2; exit 1
  fi
  echo "build.sh: installing the single-user server's packages from PyPI (cached afterwards)" >&2
  "$python" -m pip install --disable-pip-version-check --target "$work/su-pip" \
    "${su_pip_options[@]}" -r "$su_requirements" > "$work/pip.log" 2>&1 || {
    { grep -v 'is neither a file nor a directory' "$work/pip.log" || true; } | tail -n 30 >&2
    echo "build.sh: pip failed to install $su_requirements (PyPI must be reachable)" >&2
    exit 1; }
  singleuser_tree "$work/su-pip" "$work/su-local"
  mkdir -p "$cache"
  tar -C "$work/su-local" --numeric-owner --owner=0 --group=0 -cf "$su_tar.$$" .
  mv -f "$su_tar.$$" "$su_tar"  # atomic, as the Debian tarball
fi

context="$work/singleuser"
mkdir -p "$context/usr/local/bin"
tar -C "$context/usr/local" -xf "$su_tar"
for script in jupyterhub-singleuser:jupyterhub.singleuser jupyter-server:jupyter_server.serverapp \
              jupyter:jupyter_core.command; do  # console scripts for the image's python
  printf '%s\n' '#!/usr/bin/python3' 'import sys' "from ${script#*:} import main" \
    'if __name__ == "__main__":' '    sys.exit(main())' > "$context/usr/local/bin/${script%%:*}"
  chmod 755 "$context/usr/local/bin/${script%%:*}"
done
printf '%s\n' 'FROM interlink-test/python:3.11' 'COPY usr/local/ /usr/local/' \
  'RUN useradd --uid 1000 --gid 100 --create-home --shell /bin/bash jovyan' \
  'ENV HOME=/home/jovyan SHELL=/bin/bash' 'WORKDIR /home/jovyan' 'USER 1000:100' \
  "$label" 'CMD ["jupyterhub-singleuser"]' > "$context/Dockerfile"
docker build -t interlink-test/singleuser:1 "$context" > "$work/docker-build.log" 2>&1 || {
  tail -n 30 "$work/docker-build.log" >&2
  echo "build.sh: docker build of interlink-test/singleuser:1 failed" >&2; exit 1; }

# tunnel: the stand-in reverse tunnel's client, for pods reached through a tunnel companion.
mkdir -p "$work/tunnel"
install -m 755 "$tunnel_client" "$work/tunnel/interlink-test-tunnel"
printf '%s\n' 'FROM interlink-test/python:3.11' \
  'COPY interlink-test-tunnel /usr/local/bin/interlink-test-tunnel' "$label" \
  'CMD ["interlink-test-tunnel", "--help"]' > "$work/tunnel/Dockerfile"
docker build -t interlink-test/tunnel:1 "$work/tunnel" > "$work/docker-build.log" 2>&1 || {
  tail -n 30 "$work/docker-build.log" >&2
  echo "build.sh: docker build of interlink-test/tunnel:1 failed" >&2; exit 1; }
echo "build.sh: built test images (version $version)" >&2
