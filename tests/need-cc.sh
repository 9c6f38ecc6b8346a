# Sourced by the test builders: make sure a C compiler with a static libc is there, installing
# Debian's gcc and libc6-dev as root when it is not, or say exactly what is missing.
have_static_cc() {
  command -v "${CC:-gcc}" >/dev/null 2>&1 || return 1
  echo 'int main(void){return 0;}' | "${CC:-gcc}" -static -x c -o /dev/null - >/dev/null 2>&1
}
if ! have_static_cc; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's gcc and libc6-dev to build test binaries" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null
  else
    echo "a C compiler with a static libc is needed to build test binaries: install gcc and libc6-dev" >&2
    exit 1
  fi
fi
