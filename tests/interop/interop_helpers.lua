-- Helpers of the Lua interop matrix (tests/interop/*_spec.lua): certificates made
-- with the openssl CLI, the peers (openssl s_server/s_client, gnutls-serv/gnutls-cli,
-- a LuaSec echo peer) as child processes, our Lua connections over TCP on 127.0.0.1
-- driven without blocking, and the matrix table printed at the end.
--
-- Builds on tests/lua/helpers.lua (child processes started with a pid file and
-- killed by pid, the per-case cleanup). Every wait is bounded.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. here .. "../lua/?.lua;" .. package.path

local H = require "helpers"
local tlsrekey = H.tlsrekey
local socket = H.socket

local I = { H = H, tlsrekey = tlsrekey, here = here }
local WAIT = 8

-- ---------------------------------------------------------------------------
-- Certificates: a CA, an ECDSA server certificate for localhost/127.0.0.1, a client
-- certificate; made once per busted run.

local certs
function I.certs()
  if certs then return certs end
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. H.shell_quote(dir)))
  local function run(cmd)
    assert(os.execute("cd " .. H.shell_quote(dir) .. " && " .. cmd .. " >/dev/null 2>&1"),
           "failed: " .. cmd)
  end
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
  run("openssl req -x509 " .. ec .. " -keyout ca.key -out ca.pem -days 3 "
      .. "-subj '/CN=tlsrekey lua interop CA' -addext basicConstraints=critical,CA:TRUE "
      .. "-addext keyUsage=critical,keyCertSign,cRLSign")
  for _, leaf in ipairs { { "server", "/CN=localhost", "serverAuth",
                            "subjectAltName=DNS:localhost,IP:127.0.0.1" },
                          { "client", "/CN=lua interop client", "clientAuth",
                            "subjectAltName=DNS:lua-interop-client" } } do
    local name, subj, eku, san = leaf[1], leaf[2], leaf[3], leaf[4]
    local f = assert(io.open(dir .. "/" .. name .. ".ext", "w"))
    f:write("basicConstraints=CA:FALSE\nextendedKeyUsage=", eku, "\n", san, "\n")
    f:close()
    run(("openssl req -new %s -keyout %s.key -out %s.csr -subj '%s'"):format(ec, name, name, subj))
    run(("openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
         .. "-extfile %s.ext -out %s.pem"):format(name, name, name))
  end
  certs = { dir = dir, ca = dir .. "/ca.pem", cert = dir .. "/server.pem",
            key = dir .. "/server.key", client_cert = dir .. "/client.pem",
            client_key = dir .. "/client.key" }
  return certs
end

function I.remove_certs()
  if certs then
    os.execute("rm -rf " .. H.shell_quote(certs.dir))
    certs = nil
  end
end

-- ---------------------------------------------------------------------------
-- The matrix

local results, cases, peers_seen = {}, {}, {}
local PEER_ORDER = { "openssl", "gnutls", "LuaSec" }

--- Declares `case` against each peer in `names`; body(peer) is the test. The spec
-- hands over busted's `it` first (I.it = it): a module does not see busted's globals.
function I.matrix(case, names, body)
  cases[#cases + 1] = case
  for _, peer in ipairs(names) do
    peers_seen[peer] = true
    I.it(case .. " [" .. peer .. "]", function()
      results[case .. "\0" .. peer] = "FAIL"
      body(peer)
      results[case .. "\0" .. peer] = "pass"
    end)
  end
end

function I.print_matrix()
  local cols = {}
  for _, p in ipairs(PEER_ORDER) do if peers_seen[p] then cols[#cols + 1] = p end end
  local width = 4
  for _, c in ipairs(cases) do width = math.max(width, #c) end
  local lines = { "", "interop matrix, Lua binding (case x peer)",
                  ("%-" .. width .. "s  %s"):format("case", table.concat(cols, "     ")) }
  local passed, total = 0, 0
  for _, c in ipairs(cases) do
    local cells = {}
    for _, p in ipairs(cols) do
      local r = results[c .. "\0" .. p]
      if r then
        total = total + 1
        if r == "pass" then passed = passed + 1 end
      end
      cells[#cells + 1] = ("%-" .. (#p + 5) .. "s"):format(r or "-")
    end
    lines[#lines + 1] = ("%-" .. width .. "s  %s"):format(c, table.concat(cells))
  end
  lines[#lines + 1] = ("%d of %d peer x case cells passed; '-': the peer cannot play that case")
                      :format(passed, total)
  io.stderr:write(table.concat(lines, "\n"), "\n")
end

-- ---------------------------------------------------------------------------
-- Driving our non-blocking connection

local function deadline() return socket.gettime() + WAIT end

--- Calls step() (which returns true when done) until done, sleeping a little while
-- it is not; fails after WAIT seconds.
function I.pump(what, step)
  local limit = deadline()
  while not step() do
    assert(socket.gettime() < limit, "timed out waiting for " .. what)
    socket.sleep(0.001)
  end
end

function I.write_all(conn, data)
  I.pump("a write", function()
    local n, want = conn:write(data)
    if n then
      assert(n == #data, "short write")
      return true
    end
    assert(want == "want_read" or want == "want_write", tostring(want))
  end)
end

--- Reads until n bytes arrived; tick() (optional) runs between attempts.
function I.read_exact(conn, n, tick)
  local got, have = {}, 0
  I.pump(("%d bytes"):format(n), function()
    if tick then tick() end
    local s, want = conn:read(n - have)
    if s then
      got[#got + 1] = s
      have = have + #s
    elseif not want then
      error("the peer closed the connection after " .. have .. " bytes", 0)
    end
    return have >= n
  end)
  return table.concat(got)
end

local counter = 0
function I.line()
  counter = counter + 1
  local hex = {}
  for i = 1, 20 + counter % 40 do hex[i] = ("%02x"):format(math.random(0, 255)) end
  -- 'd' first: s_client takes a line starting with R, k, K or Q as a command
  return ("d%d-%s\n"):format(counter, table.concat(hex))
end

-- ---------------------------------------------------------------------------
-- Peers. Each has p.echoes (sends back by itself) or relays: the harness waits for
-- the data in the peer's output and types it back into the peer's stdin.

local function wait_pattern(p, pattern, n, what)
  n = n or 1
  local got = p:wait_count(pattern, n, WAIT)
  assert(got >= n, ("%s: expected %d x %q in the peer's output, saw %d:\n%s")
         :format(what or "peer", n, pattern, got, p:output():sub(-3000)))
end
I.wait_pattern = wait_pattern

I.MSG = {
  SENT_KU = ">>> TLS 1%.3, Handshake %[length %x+%], KeyUpdate",
  RECV_KU = "<<< TLS 1%.3, Handshake %[length %x+%], KeyUpdate",
  SENT_HELLO_REQUEST = ">>> TLS 1%.2, Handshake %[length %x+%], HelloRequest",
  RECV_CLIENT_HELLO = "<<< TLS 1%.%d, Handshake %[length %x+%], ClientHello",
}

local function gnutls_priority(version)
  return "NORMAL:-VERS-ALL:" .. (version == "1.3" and "+VERS-TLS1.3" or "+VERS-TLS1.2")
end

--- A server peer; returns p with p.port.
function I.server_peer(name, spec)
  local c = I.certs()
  local p
  if name == "openssl" then
    local port = H.free_port()
    local argv = { "openssl", "s_server", "-accept", "127.0.0.1:" .. port, "-cert", c.cert,
                   "-key", c.key, "-msg", "-naccept", "1",
                   spec.version == "1.3" and "-tls1_3" or "-tls1_2" }
    if spec.allow_client_reneg then argv[#argv + 1] = "-client_renegotiation" end
    p = H.spawn(argv)
    wait_pattern(p, "ACCEPT", 1, "s_server")
    p.port = port
  elseif name == "gnutls" then
    local port = H.free_port()
    p = H.spawn { "gnutls-serv", "--echo", "--crlf", "-p", tostring(port), "--x509certfile",
                  c.cert, "--x509keyfile", c.key, "--disable-client-cert",
                  "--priority", gnutls_priority(spec.version) }
    wait_pattern(p, "listening on IPv4.-done", 1, "gnutls-serv")
    p.port = port
    p.echoes = true
  elseif name == "LuaSec" then
    local options = "all" .. (spec.allow_client_reneg and ",allow_client_renegotiation" or "")
    p = H.spawn { "lua5.4", here .. "luasec_peer.lua", "role=server",
                  "protocol=" .. (spec.version == "1.3" and "tlsv1_3" or "tlsv1_2"),
                  "cafile=" .. c.ca, "certificate=" .. c.cert, "key=" .. c.key,
                  "options=" .. options }
    local port = p:wait_output("LISTENING (%d+)", WAIT)
    assert(port, "the LuaSec peer did not start:\n" .. p:output())
    p.port = tonumber(port)
    p.echoes = true
  else
    error("no server peer " .. name)
  end
  p.name = name
  return p
end

--- A client peer connecting to 127.0.0.1:port.
function I.client_peer(name, spec, port)
  local c = I.certs()
  local p
  if name == "openssl" then
    p = H.spawn { "openssl", "s_client", "-connect", "127.0.0.1:" .. port, "-servername",
                  "localhost", "-CAfile", c.ca, "-verify_return_error", "-verify_hostname",
                  "localhost", "-msg", spec.version == "1.3" and "-tls1_3" or "-tls1_2" }
  elseif name == "gnutls" then
    p = H.spawn { "gnutls-cli", "--inline-commands", "--x509cafile", c.ca, "--sni-hostname",
                  "localhost", "--verify-hostname", "localhost", "--priority",
                  gnutls_priority(spec.version), "-p", tostring(port), "127.0.0.1" }
  elseif name == "LuaSec" then
    p = H.spawn { "lua5.4", here .. "luasec_peer.lua", "role=client",
                  "protocol=" .. (spec.version == "1.3" and "tlsv1_3" or "tlsv1_2"),
                  "cafile=" .. c.ca, "port=" .. port, "verify=peer", "options=all" }
    p.echoes = true
  else
    error("no client peer " .. name)
  end
  p.name = name
  return p
end

-- ---------------------------------------------------------------------------
-- Sessions

local Session = {}
Session.__index = Session

function Session:roundtrip()
  local data = I.line()
  I.write_all(self.conn, data)
  if not self.peer.echoes then
    local p, from = self.peer, self.consumed
    I.pump("the data to reach the peer", function()
      local i, j = p:output():find(data, from, true)
      if i then self.consumed = j + 1 end
      return i ~= nil
    end)
    p:send(data:sub(1, -2))
  end
  local got = I.read_exact(self.conn, #data)
  assert(got == data, "the data came back altered")
  return data
end

--- The peer sends `data` by itself after `action` ran; our reads meanwhile carry
-- whatever the peer started (a key update, a renegotiation). ready() (optional)
-- says when the peer may send.
function Session:peer_sends(action, ready)
  local data = I.line()
  action()
  local sent = false
  local got = I.read_exact(self.conn, #data, function()
    if not sent and (not ready or ready()) then
      self.peer:send(data:sub(1, -2))
      sent = true
    end
  end)
  assert(got == data, "the data came back altered")
end

--- Reads (expecting no data) until done() is true.
function Session:settle(what, done)
  I.pump(what, function()
    local s, want = self.conn:read()
    assert(s == nil, "unexpected data from the peer")
    assert(want, "the peer closed the connection")
    return done()
  end)
end

--- A command typed into an interactive peer, then its evidence awaited.
function Session:command(line, evidence)
  local n = self.peer:count(evidence) + 1
  self.peer:send(line)
  wait_pattern(self.peer, evidence, n, self.peer.name)
end

local function versions(spec)
  return "TLSv1.2", spec.version == "1.3" and "TLSv1.3" or "TLSv1.2"
end

--- We are the client of a server peer.
function I.as_client(name, spec, ours)
  spec = spec or { version = "1.3" }
  local c = I.certs()
  local p = I.server_peer(name, spec)
  local opts = { mode = "client", cafile = c.ca }
  opts.min_version, opts.max_version = versions(spec)
  for k, v in pairs(ours or {}) do opts[k] = v end
  local ctx = tlsrekey.context(opts)
  local conn = ctx:connect("127.0.0.1", p.port, { server_hostname = "localhost", timeout = 0 })
  H.defer(function() conn:close() end)
  local s = setmetatable({ conn = conn, peer = p, consumed = 1 }, Session)
  I.pump("the handshake", function()
    local ok, err = pcall(conn.do_handshake, conn)
    if ok then return true end
    assert(tlsrekey.is_error(err) and err.code:find("^want_"), tostring(err)
           .. "\n" .. p:output():sub(-2000))
  end)
  return s
end

--- We are the server of a client peer.
function I.as_server(name, spec, ours)
  spec = spec or { version = "1.3" }
  local c = I.certs()
  local srv, port = H.listen()
  local p = I.client_peer(name, spec, port)
  srv:settimeout(WAIT)
  local sock = assert(srv:accept())
  H.defer(function() sock:close() end)
  sock:setoption("tcp-nodelay", true)
  local opts = { mode = "server", cert = c.cert, key = c.key }
  opts.min_version, opts.max_version = versions(spec)
  for k, v in pairs(ours or {}) do opts[k] = v end
  local ctx = tlsrekey.context(opts)
  local conn = ctx:wrap(sock, { timeout = 0 })
  H.defer(function() conn:close() end)
  local s = setmetatable({ conn = conn, peer = p, consumed = 1 }, Session)
  I.pump("the handshake", function()
    local ok, err = pcall(conn.do_handshake, conn)
    if ok then return true end
    assert(tlsrekey.is_error(err) and err.code:find("^want_"), tostring(err)
           .. "\n" .. p:output():sub(-2000))
  end)
  return s
end

return I
