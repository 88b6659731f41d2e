#!/bin/sh
# Packaging check: `luarocks make` of the rockspec into a throwaway tree, `luarocks
# pack` + `luarocks install` of the rock into a second one, then `require "tlsrekey"`
# from outside the source tree against each. The build runs in a copy of
# the work tree (tracked and new, non-ignored files only), so it proves the
# rockspec names every file it needs and leaves no objects behind in the tree.
# Usage: sh tests/lua/packaging.sh   (from anywhere; exits non-zero on failure)
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# builtin takes no wildcards: every C file of the shim and the core must be listed.
missing=
for f in "$root"/lua/src/*.c "$root"/csrc/*.c; do
    rel=${f#"$root"/}
    grep -q "\"$rel\"" "$root/rockspec/tlsrekey-scm-1.rockspec" || missing="$missing $rel"
done
if [ -n "$missing" ]; then
    echo "packaging: rockspec/tlsrekey-scm-1.rockspec does not list:$missing" >&2
    exit 1
fi

mkdir "$tmp/src" "$tmp/tree" "$tmp/elsewhere"
(cd "$root" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$root" && xargs -0 tar cf - --no-recursion --ignore-failed-read 2>/dev/null) |
    (cd "$tmp/src" && tar xf -)

(cd "$tmp/src" && luarocks --lua-version 5.4 make rockspec/tlsrekey-scm-1.rockspec \
    --tree "$tmp/tree") >"$tmp/build.log" 2>&1 || {
    cat "$tmp/build.log"
    echo "packaging: luarocks make failed" >&2
    exit 1
}

# A binary rock packed from that tree installs into another one too.
(cd "$tmp" && luarocks --lua-version 5.4 pack tlsrekey scm-1 --tree "$tmp/tree" &&
    luarocks --lua-version 5.4 install "$tmp"/tlsrekey-scm-1.*.rock --tree "$tmp/tree2") \
    >"$tmp/pack.log" 2>&1 || {
    cat "$tmp/pack.log"
    echo "packaging: luarocks pack/install of the rock failed" >&2
    exit 1
}

cd "$tmp/elsewhere"
for tree in "$tmp/tree" "$tmp/tree2"; do
TREE="$tree" LUA_PATH= LUA_CPATH= lua5.4 -e '
local tree = os.getenv("TREE")
package.path = tree .. "/share/lua/5.4/?.lua;" .. tree .. "/share/lua/5.4/?/init.lua"
package.cpath = tree .. "/lib/lua/5.4/?.so"
local t = require "tlsrekey"
assert(package.searchpath("tlsrekey.core", package.cpath):find(tree, 1, true),
       "tlsrekey.core must come from the installed tree")
local c, s = t.pair()
c:key_update(t.KEY_UPDATE_REQUESTED)
assert(c:write("ping") == 4 and s:read() == "ping")
assert(s:write("pong") == 4 and c:read() == "pong")
assert(c:stats().key_updates_received == 1, "the peer answered the request")
local c12 = t.pair { max_version = "TLSv1.2" }
c12:renegotiate()
assert(c12:renegotiate_pending() == true)
local ok, err = pcall(c.renegotiate, c)
assert(not ok and err.code == "state")
print("packaging: ok from " .. tree:match("[^/]+$") .. " (" .. t._VERSION .. ", "
      .. t.OPENSSL_VERSION .. ")")
'
done
