#!/bin/bash
# bench/variant.sh DIR [PATCH...] - a copy of this tree's tlsrekey sources in DIR with
# the patches applied (git apply, paths as in the repository), both bindings built
# there, for `bench/run.py --variant NAME=DIR`: a lever measured against the tree in
# one run before anyone changes the real sources.
#
#   bench/variant.sh /tmp/p1 bench/proposals/p1-err-peek.patch
#   .venv/bin/python bench/run.py --variant p1=/tmp/p1 --only tlsrekey --transport pair
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: bench/variant.sh DIR [PATCH...]}
shift
rm -rf "$dir"
mkdir -p "$dir"
patches=()
for p in "$@"; do patches+=("$(cd "$(dirname "$p")" && pwd)/$(basename "$p")"); done
cd "$root"
cp -r setup.py pyproject.toml csrc python lua "$dir"/
rm -f "$dir"/python/tlsrekey/*.so
cd "$dir"
for p in ${patches[@]+"${patches[@]}"}; do git apply --verbose "$p"; done
mkdir -p build/lua/tlsrekey
${CC:-gcc} -shared -fPIC -O2 -g -Icsrc -I/usr/include/lua5.4 lua/src/*.c csrc/*.c \
    -lssl -lcrypto -o build/lua/tlsrekey/core.so
"$root/.venv/bin/python" setup.py -q build_ext --inplace --force >/dev/null
ls python/tlsrekey/_tlsrekey*.so >/dev/null
echo "built $dir"
