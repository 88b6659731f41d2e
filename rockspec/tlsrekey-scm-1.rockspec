-- luarocks --lua-version 5.4 make rockspec/tlsrekey-scm-1.rockspec
package = "tlsrekey"
version = "scm-1"
source = {
   -- The checkout this rockspec lies in: `luarocks make` builds from the current
   -- directory and fetches nothing. A release rockspec names the public address.
   url = ".",
}
description = {
   summary = "TLS connections with TLS 1.3 key update and TLS 1.2 renegotiation",
   detailed = [[
tlsrekey gives Lua programs TLS connection objects on OpenSSL 3 with the rekeying
calls no other binding offers: key_update, get_key_update_type, renegotiate,
renegotiate_abbreviated, renegotiate_pending, with counters and events, over
sockets (LuaSocket objects or fds), memory transports or an in-process pair.
]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.4",
}
external_dependencies = {
   OPENSSL = {
      header = "openssl/ssl.h",
   },
}
build = {
   type = "builtin",
   modules = {
      tlsrekey = "lua/tlsrekey.lua",
      -- LuaSocket/LuaSec-compatible objects (pure Lua, needs luasocket at run time)
      tlsrekey_compat = "lua/tlsrekey_compat.lua",
      ["tlsrekey.core"] = {
         -- The shim and the shared core (builtin takes no wildcards: keep in step
         -- with lua/src/ and csrc/).
         sources = {
            "lua/src/module.c", "lua/src/errors.c", "lua/src/context.c",
            "lua/src/connection.c", "lua/src/events.c", "lua/src/policy.c",
            "lua/src/buffer.c",
            "csrc/connection.c", "csrc/context.c", "csrc/error.c", "csrc/events.c",
            "csrc/info.c", "csrc/io.c", "csrc/policy.c", "csrc/rekey.c",
            "csrc/testcert.c", "csrc/dtls.c",
         },
         incdirs = { "csrc", "$(OPENSSL_INCDIR)" },
         libdirs = { "$(OPENSSL_LIBDIR)" },
         libraries = { "ssl", "crypto" },
      },
   },
}
