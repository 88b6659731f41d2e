--- tlsrekey: TLS connections with TLS 1.3 key update and TLS 1.2 renegotiation.
--
-- Everything lives in the C module tlsrekey.core (contexts, connections, errors,
-- lifetimes); this file only adds what reads better written in Lua.
--
--   local tlsrekey = require "tlsrekey"
--   local c, s = tlsrekey.pair()              -- handshaken in memory, TLS 1.3
--   c:key_update("requested"); c:write("hi"); print(s:read())
local core = require "tlsrekey.core"

local M = {}
for k, v in pairs(core) do M[k] = v end

-- Options of pair(), and which end each one goes to.
local BOTH, SERVER, CLIENT = 1, 2, 3
local pair_options = {
  min_version = BOTH, max_version = BOTH, ciphers = BOTH, ciphersuites = BOTH,
  groups = BOTH, alpn = BOTH, no_renegotiation = BOTH, ignore_unexpected_eof = BOTH,
  release_buffers = BOTH,
  cert = SERVER, key = SERVER, allow_client_renegotiation = SERVER,
  num_tickets = SERVER, session_cache = SERVER,
  keylog = CLIENT, server_hostname = CLIENT,
}

--- tlsrekey.pair_contexts([opts]) -> client_ctx, server_ctx, server_hostname
-- The two contexts pair() uses, for joining them over something else (a socket
-- pair, a memory transport). The client trusts the server's certificate (by default
-- a throwaway one from make_test_cert) and checks the name "localhost" (or
-- opts.server_hostname).
-- Options: min_version, max_version, ciphers, ciphersuites, groups, alpn,
-- no_renegotiation, ignore_unexpected_eof, release_buffers (both ends); cert, key,
-- allow_client_renegotiation, num_tickets, session_cache (server); keylog,
-- server_hostname (client).
function M.pair_contexts(opts, fname)
  fname = fname or "pair_contexts"
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #1 to '%s' (table expected, got %s)"):format(fname, type(opts)), 3)
  end
  opts = opts or {}
  local sopts, copts = { mode = "server" }, { mode = "client" }
  for k, v in pairs(opts) do
    local where = pair_options[k]
    if not where then
      error(("bad argument #1 to '%s' (unknown option '%s')"):format(fname, tostring(k)), 3)
    end
    if where ~= CLIENT then sopts[k] = v end
    if where ~= SERVER then copts[k] = v end
  end
  if sopts.cert == nil and sopts.key == nil then
    sopts.cert, sopts.key = core.make_test_cert("localhost")
  end
  local hostname = copts.server_hostname or "localhost"
  copts.server_hostname = nil
  copts.cafile = sopts.cert
  return core.context(copts), core.context(sopts), hostname
end

--- tlsrekey.pair([opts]) -> client, server
-- Two connections joined in memory and handshaken: no network, no files. Takes the
-- options of pair_contexts. Each end keeps the other alive (the core drives one
-- from inside the other's calls); close() one to disconnect it.
function M.pair(opts)
  local cctx, sctx, hostname = M.pair_contexts(opts, "pair")
  return core.pair(cctx, sctx, hostname)
end

return M
