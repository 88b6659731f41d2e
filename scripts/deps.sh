#!/usr/bin/env bash
# make deps: the Debian packages tlsrekey builds and tests with, then the Python venv.
#
# Debian packages are installed only when one is missing (checked with dpkg-query),
# so a machine that has them all never touches the network. Not root: print the
# exact apt-get line and fail. The venv (.venv) is made from the python3 on PATH,
# the users' interpreter, and filled from scripts/requirements-dev.txt; the Makefile
# reruns this only when that file changes (stamp: .venv/.deps-stamp).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential gcc make pkg-config git  # compiler and tools (git: the Lua rock)
  libssl-dev openssl                       # OpenSSL 3 headers and the s_client/s_server peer
  gnutls-bin                               # gnutls-cli/gnutls-serv: an independent interop peer
  liblua5.4-dev lua5.4 luarocks zip unzip  # the Lua binding and its rock (luarocks packs with zip)
  lua-busted lua-socket lua-sec            # Lua tests, sockets, and LuaSec as interop peer
  valgrind                                 # memory checks by hand
  clang                                    # libFuzzer and clang's sanitizer runtimes
  # More interop peers (tests/interop/stacks.py), the first four built at test time:
  golang-go                                # Go's crypto/tls (go build)
  default-jdk-headless                     # JSSE (javac; JDK 17 on Debian 12, 21 on 13)
  libmbedtls-dev libwolfssl-dev            # Mbed TLS and wolfSSL (cc)
  libnss3-tools                            # NSS: selfserv, tstclnt, certutil, pk12util
  curl lighttpd lighttpd-mod-gnutls        # a deployed client and server
)
# clang's runtimes (libFuzzer, the sanitizers) come in a package named after its
# major version: 14 on Debian 12, 19 on Debian 13. Ask the installed clang, or
# else what apt would install as clang.
clang_major() {
  local v=""
  if command -v clang >/dev/null 2>&1; then
    v=$(clang -dumpversion 2>/dev/null | cut -d. -f1)
  fi
  if [ -z "$v" ]; then
    v=$(apt-cache depends clang 2>/dev/null | sed -n 's/.*Depends: clang-\([0-9][0-9]*\)$/\1/p' | head -n1)
  fi
  echo "$v"
}
# Debian's own python3 needs python3-venv for `python3 -m venv`; pyenv and other
# builds carry venv themselves.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  packages+=(python3-venv)
fi
# ...and python3-dev for the headers the extension builds against.
if ! python3 -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_path("include"), "Python.h"))' >/dev/null 2>&1; then
  packages+=(python3-dev)
fi

major=$(clang_major)
if [ -z "$major" ] && [ "$(id -u)" -eq 0 ]; then
  apt-get update -q >/dev/null 2>&1 || true
  major=$(clang_major)
fi
if [ -n "$major" ]; then
  packages+=("libclang-rt-$major-dev")
fi

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tlsrekey needs these Debian packages, which are not installed:" >&2
    echo "    ${missing[*]}" >&2
    echo "Install them as root, then run make again:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # lighttpd's package starts a system web server on every address where an init
  # system runs; the tests start their own on 127.0.0.1 only. Unless the machine
  # already has a policy, forbid service starts for the while of the install.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# tlsrekey deps.sh: no service starts while it installs\nexit 101\n' \
        >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  # A mirror can fail for a moment: three tries, as CI has one go at this.
  for try in 1 2 3; do
    if apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; then
      break
    fi
    [ "$try" -lt 3 ] || { echo "deps: apt-get failed three times" >&2; exit 1; }
    sleep 10
  done
fi

if [ "${1:-}" = --venv ]; then
  if [ ! -x .venv/bin/python ]; then
    echo "deps: creating .venv with $(command -v python3) ($(python3 --version 2>&1))"
    python3 -m venv .venv
  fi
  # (The filter drops pip's complaint about a missing local index some machines
  # configure; pipefail keeps pip's exit status.)
  .venv/bin/python -m pip install -q --disable-pip-version-check \
      -r scripts/requirements-dev.txt 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
fi
