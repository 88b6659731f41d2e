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

-- Options of pair(), and which end each one goes to (as in Python's pair()): name
-- on the pair -> { end, name in that end's context }.
local BOTH, SERVER, CLIENT = 1, 2, 3
local pair_options = {
  min_version = BOTH, max_version = BOTH, ciphers = BOTH, ciphersuites = BOTH,
  groups = BOTH, alpn = BOTH, keylog = BOTH, ignore_unexpected_eof = BOTH,
  release_buffers = BOTH, no_renegotiation = BOTH, rekey = BOTH,
  dtls = BOTH, dtls_initial_timeout = BOTH, cookie_exchange = SERVER,
  cert = SERVER, key = SERVER, allow_client_renegotiation = SERVER,
  num_tickets = SERVER, session_cache = SERVER, session_tickets = SERVER,
  verify_client = SERVER,
  verify = CLIENT, check_hostname = CLIENT, cafile = CLIENT, capath = CLIENT,
  client_cert = CLIENT, client_key = CLIENT, server_hostname = CLIENT,
}
local renamed = { verify_client = "verify", client_cert = "cert", client_key = "key" }

-- fn(...) on behalf of pair(): an argument error it raises names pair() and the
-- option of opts the value came from ('client_cert'), not the option of the
-- context it went to ('cert'), which the caller never wrote; an error naming no
-- option is about `plain`. Level as pair_contexts' own errors.
local function for_pair(fname, names, plain, fn, ...)
  local ok, a, b = pcall(fn, ...)
  if ok then return a, b end
  local inner = type(a) == "string" and a:match("^bad argument #1 to '[^']*' %((.*)%)$")
  if not inner then error(a, 0) end
  local renamed, n = inner:gsub("^option '([%w_]+)'", function(name)
    return ("option '%s'"):format(names[name] or name)
  end, 1)
  if n == 0 and plain then renamed = ("option '%s': %s"):format(plain, inner) end
  error(("bad argument #1 to '%s' (%s)"):format(fname, renamed), 4)
end

--- tlsrekey.pair_contexts([opts]) -> client_ctx, server_ctx, server_hostname
-- The two contexts pair() uses, for joining them over something else (a socket
-- pair, a memory transport).
-- cert/key: the server's certificate (default: a throwaway one from
-- make_test_cert(server_hostname)); the client trusts cafile (default: cert) and
-- checks server_hostname (default "localhost"). client_cert/client_key: a client
-- certificate, which the server then trusts. Options for both ends: min_version,
-- max_version, ciphers, ciphersuites, groups, alpn, keylog, ignore_unexpected_eof,
-- release_buffers, no_renegotiation, rekey (a policy table), dtls (true: DTLS 1.2
-- contexts: datagrams), dtls_initial_timeout; for the server: allow_client_renegotiation,
-- verify_client, num_tickets, session_cache, session_tickets, cookie_exchange; for the client: verify,
-- check_hostname, capath.
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
    if k == "dtls" then
      if type(v) ~= "boolean" then
        error(("bad argument #1 to '%s' (option 'dtls' must be a boolean)"):format(fname), 3)
      end
      if v then sopts.protocol, copts.protocol = "dtls", "dtls" end
    else
      if where ~= CLIENT then sopts[renamed[k] or k] = v end
      if where ~= SERVER then copts[renamed[k] or k] = v end
    end
  end
  local hostname = opts.server_hostname or "localhost"
  if type(hostname) ~= "string" or hostname:find("\0", 1, true) then
    error(("bad argument #1 to '%s' (option 'server_hostname' must be a string "
           .. "without NUL bytes)"):format(fname), 3)
  end
  copts.server_hostname = nil
  if sopts.cert == nil then
    if sopts.key ~= nil then
      error(("bad argument #1 to '%s' (option 'key' given without 'cert')"):format(fname), 3)
    end
    sopts.cert, sopts.key = for_pair(fname, {}, "server_hostname", core.make_test_cert,
                                     hostname)
  end
  local client_names = { cert = "client_cert", key = "client_key" }
  if copts.cafile == nil then copts.cafile, client_names.cafile = sopts.cert, "cert" end
  if opts.client_cert ~= nil and sopts.cafile == nil then sopts.cafile = opts.client_cert end
  -- the server's first: the client trusts its certificate (cafile), and a bad one
  -- is the server's cert
  local sctx = for_pair(fname, { cafile = "client_cert", verify = "verify_client" }, nil,
                        core.context, sopts)
  return for_pair(fname, client_names, nil, core.context, copts), sctx, hostname
end

--- tlsrekey.pair([opts]) -> client, server
-- Two connections joined in memory and handshaken: no network, no files. Takes the
-- options of pair_contexts. Each end keeps the other alive (the core drives one
-- from inside the other's calls); close() one to disconnect it.
-- pair{client_ctx = c, server_ctx = s [, server_hostname = h]} joins two existing
-- contexts instead (one pair of contexts for many pairs); no other option goes
-- with them.
function M.pair(opts)
  if type(opts) == "table" and (opts.client_ctx ~= nil or opts.server_ctx ~= nil) then
    for k in pairs(opts) do
      if k ~= "client_ctx" and k ~= "server_ctx" and k ~= "server_hostname" then
        error(("bad argument #1 to 'pair' (option '%s' cannot be combined with "
               .. "client_ctx/server_ctx)"):format(tostring(k)), 2)
      end
    end
    for _, name in ipairs { "client_ctx", "server_ctx" } do
      local ctx = opts[name]
      local mt = type(ctx) == "userdata" and getmetatable(ctx)
      if not (type(mt) == "table" and mt.__name == "tlsrekey.context") then
        error(("bad argument #1 to 'pair' (option '%s' must be a tlsrekey.context, "
               .. "got %s)"):format(name, type(mt) == "table" and mt.__name or type(ctx)), 2)
      end
      local want = name == "client_ctx" and "client" or "server"
      if ctx:role() ~= want then
        error(("bad argument #1 to 'pair' (option '%s' must be a %s context, got a %s "
               .. "context)"):format(name, want, ctx:role()), 2)
      end
    end
    local hostname = opts.server_hostname
    if hostname == nil then hostname = "localhost" end
    if type(hostname) ~= "string" or hostname:find("\0", 1, true) then
      error("bad argument #1 to 'pair' (option 'server_hostname' must be a string "
            .. "without NUL bytes)", 2)
    end
    return core.pair { client_ctx = opts.client_ctx, server_ctx = opts.server_ctx,
                       server_hostname = hostname }
  end
  local cctx, sctx, hostname = M.pair_contexts(opts, "pair")
  return core.pair { client_ctx = cctx, server_ctx = sctx, server_hostname = hostname }
end

return M
