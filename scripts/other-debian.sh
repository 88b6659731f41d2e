#!/usr/bin/env bash
# The other Debian: a root of the Debian release this host is not (13 "trixie" on a
# Debian 12 host, 12 "bookworm" on a Debian 13 host), for the platform matrix.
#
#   scripts/other-debian.sh root         make the root once (cached), print its path
#   scripts/other-debian.sh run CMD...   run CMD inside it, in a copy of this checkout
#                                        (/src, or $OTHER_DEBIAN_SRC), with /proc, /sys,
#                                        /dev mounted for the while and unmounted again
#   scripts/other-debian.sh release      print the other release's number (12 or 13)
#
# The root lives in build/roots/debian-N. It is made with debootstrap from the mirror
# the host's own apt uses, and carries the host's locally added CA certificates and
# pip configuration, so that apt and pip inside reach what they reach outside. Root
# only (debootstrap, chroot and mount need it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$(pwd)

host_release() {
  . /etc/os-release
  echo "${VERSION_ID%%.*}"
}

other_release() {
  case "$(host_release)" in
    12) echo 13 ;;
    13) echo 12 ;;
    *) echo "other-debian: this host is not Debian 12 or 13" >&2; exit 2 ;;
  esac
}

codename() {
  case "$1" in 12) echo bookworm ;; 13) echo trixie ;; esac
}

# The host's Debian mirror: the first apt source that serves the main archive (not
# the security one), from deb822 .sources or one-line sources.list files.
host_mirror() {
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '/^URIs:/ {print $2}' | grep -v -- '-security' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
          awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' |
          grep -v -- '-security' | head -n1 || true)
  fi
  [ -n "$uri" ] || { echo "other-debian: no Debian mirror in the host's apt sources" >&2; exit 2; }
  echo "$uri"
}

need_root() {
  [ "$(id -u)" -eq 0 ] || { echo "other-debian: needs root (debootstrap, chroot, mount)" >&2; exit 2; }
}

make_root() {
  need_root
  local rel dir mirror
  rel=$(other_release)
  dir=$ROOT_DIR/build/roots/debian-$rel
  if [ -f "$dir/.complete" ]; then
    echo "$dir"
    return
  fi
  command -v debootstrap >/dev/null || {
    echo "other-debian: installing debootstrap" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2; }
  }
  mirror=$(host_mirror)
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  echo "other-debian: debootstrap $(codename "$rel") into $dir" >&2
  local try
  for try in 1 2 3; do
    if debootstrap --variant=minbase --include=ca-certificates \
        "$(codename "$rel")" "$dir" "$mirror" >"$dir.log" 2>&1; then
      break
    fi
    [ "$try" -lt 3 ] || { tail -n 20 "$dir.log" >&2; echo "other-debian: debootstrap failed" >&2; exit 1; }
    rm -rf "$dir"
    sleep 10
  done
  # What makes apt and pip work here must work there too.
  if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
    cp -a /usr/local/share/ca-certificates/. "$dir/usr/local/share/ca-certificates/"
  fi
  [ -f /etc/pip.conf ] && cp /etc/pip.conf "$dir/etc/pip.conf"
  for f in /etc/apt/apt.conf.d/*; do
    # the host's apt settings (proxies, validity checks), not its package sources
    case "$(basename "$f")" in *autoremove*|*docker*) ;; *) cp "$f" "$dir/etc/apt/apt.conf.d/" ;; esac
  done
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  chroot "$dir" update-ca-certificates >/dev/null
  # What a checkout needs before its own `make deps` can run: make itself, git (the
  # rock is packed from the repository) and python3 (scripts/run_tests.py).
  for try in 1 2 3; do
    if chroot "$dir" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
         sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends make git python3' \
         >>"$dir.log" 2>&1; then
      break
    fi
    [ "$try" -lt 3 ] || { tail -n 20 "$dir.log" >&2; echo "other-debian: apt-get failed in the root" >&2; exit 1; }
    sleep 10
  done
  touch "$dir/.complete"
  echo "$dir"
}

# Run a command inside the root in a fresh copy of this checkout's tracked files (and
# the uncommitted changes to them), as `make test` on that Debian would.
run_in_root() {
  need_root
  local dir
  dir=$(make_root)
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  mounted=()
  cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
      umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" 2>/dev/null || true
    done
  }
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local m
  for m in proc sys dev dev/pts; do
    mkdir -p "$dir/$m"
    if ! mountpoint -q "$dir/$m"; then
      mount --bind "/$m" "$dir/$m"
      mounted+=("$dir/$m")
    fi
  done
  # The copy: every file git knows of, as it is in the work tree, and the repository
  # itself (the rock is packed from it); build/ and .venv/ inside it are the root's
  # own and kept between runs.
  local src=${OTHER_DEBIAN_SRC:-/src}
  mkdir -p "$dir$src"
  find "$dir$src" -mindepth 1 -maxdepth 1 ! -name build ! -name .venv -exec rm -rf {} +
  { git ls-files -z --cached --others --exclude-standard; printf '.git\0'; } |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -C "$dir$src" -xf -
  local envs=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
              LANG=C.UTF-8 TRK_PLATFORM_INNER=1 DEBIAN_FRONTEND=noninteractive)
  [ -n "${CI:-}" ] && envs+=(CI="$CI")
  set +e
  chroot "$dir" /usr/bin/env -i "${envs[@]}" /bin/bash -c 'cd "$0" && "$@"' "$src" "$@"
  local status=$?
  set -e
  return $status
}

case "${1:-}" in
  root) make_root ;;
  release) other_release ;;
  run) shift; [ $# -gt 0 ] || { echo "usage: $0 run CMD..." >&2; exit 2; }; run_in_root "$@" ;;
  *) echo "usage: $0 root | release | run CMD..." >&2; exit 2 ;;
esac
