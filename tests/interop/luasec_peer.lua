-- A LuaSec echo peer for the interop matrix, run as a child process:
--
--   lua5.4 luasec_peer.lua role=server|client protocol=tlsv1_3|tlsv1_2 cafile=PATH
--          [port=N] [certificate=PATH key=PATH] [verify=none|peer[,fail_if_no_peer_cert]]
--          [options=all,allow_client_renegotiation,...]
--
-- A server listens on 127.0.0.1 (a port of its own, printed as "LISTENING <port>"),
-- a client connects to 127.0.0.1:<port>. After the handshake it prints
-- "HANDSHAKEN <protocol> <cipher>", then sends back every line it receives until the
-- peer closes ("END <reason>"). LuaSec cannot start a key update or a renegotiation
-- but follows a peer's KeyUpdate and HelloRequest inside its reads.
local socket = require "socket"
local ssl = require "ssl"

local opts = {}
for _, a in ipairs(arg) do
  local k, v = a:match("^([%w_]+)=(.*)$")
  assert(k, "bad argument " .. a)
  opts[k] = v
end

local function list(s)
  local t = {}
  for item in (s or ""):gmatch("[^,]+") do t[#t + 1] = item end
  return t
end

local function say(...)
  io.stdout:write(table.concat({ ... }, " "), "\n")
  io.stdout:flush()
end

local params = {
  mode = opts.role,
  protocol = opts.protocol,
  cafile = opts.cafile,
  certificate = opts.certificate,
  key = opts.key,
  verify = list(opts.verify or "none"),
  options = list(opts.options or "all"),
  curveslist = "X25519:P-256:P-384",
}

local sock
if opts.role == "server" then
  local srv = assert(socket.bind("127.0.0.1", 0))
  say("LISTENING", (select(2, srv:getsockname())))
  srv:settimeout(10)
  sock = assert(srv:accept())
  srv:close()
else
  sock = socket.tcp()
  sock:settimeout(10)
  assert(sock:connect("127.0.0.1", tonumber(opts.port)))
end

sock:setoption("tcp-nodelay", true) -- a KeyUpdate and its data are two small writes
local conn = assert(ssl.wrap(sock, params))
conn:settimeout(10)
if opts.role == "client" then conn:sni("localhost") end
local ok, err = conn:dohandshake()
if not ok then
  say("HANDSHAKE FAILED", tostring(err))
  os.exit(1)
end
say("HANDSHAKEN", tostring(conn:info("protocol")), tostring(conn:info("cipher")))
while true do
  local line, rerr = conn:receive("*l")
  if not line then
    say("END", tostring(rerr))
    break
  end
  local sent, serr = conn:send(line .. "\n")
  if not sent then
    say("END send", tostring(serr))
    break
  end
end
conn:close()
