-- Interop with LuaSec (the LuaSocket TLS binding on OpenSSL), each peer in a child
-- lua5.4 process: a tlsrekey client against a LuaSec echo server and a tlsrekey
-- server against a LuaSec echo client. LuaSec cannot start a key update or a
-- renegotiation, but follows a peer's KeyUpdate and HelloRequest transparently.
local H = require "helpers"
local tlsrekey = H.tlsrekey

local ECHO = [[
local socket = require "socket"
local ssl = require "ssl"
local role, a, b, tls12, allow = ...
local function echo(conn)
  assert(conn:dohandshake())
  print("HANDSHAKEN " .. tostring(conn:info("protocol")))
  io.stdout:flush()
  while true do
    local line, err = conn:receive("*l")
    if not line then print("END " .. tostring(err)) io.stdout:flush() break end
    print("GOT " .. line)
    io.stdout:flush()
    assert(conn:send(line .. "\n"))
  end
  conn:close()
end
local options = { "all" }
if tls12 == "1" then options[#options + 1] = "no_tlsv1_3" end
if allow == "1" then options[#options + 1] = "allow_client_renegotiation" end
if role == "server" then
  local srv = assert(socket.bind("127.0.0.1", 0))
  print("LISTENING " .. select(2, srv:getsockname()))
  io.stdout:flush()
  srv:settimeout(10)
  local sock = assert(srv:accept())
  local conn = assert(ssl.wrap(sock, { mode = "server", protocol = "any", certificate = a,
                                       key = b, options = options }))
  conn:settimeout(10)
  echo(conn)
else
  local sock = socket.tcp()
  sock:settimeout(10)
  assert(sock:connect("127.0.0.1", tonumber(a)))
  local conn = assert(ssl.wrap(sock, { mode = "client", protocol = "any", verify = "none",
                                       options = options }))
  conn:settimeout(10)
  echo(conn)
end
]]

local have_luasec = pcall(require, "ssl")

local function echo_script()
  local path = H.tmpname(".lua")
  H.write_file(path, ECHO)
  return path
end

local function read_line(conn)
  local buf = ""
  while not buf:find("\n", 1, true) do
    local s = conn:read()
    assert(s, "the peer closed the connection")
    buf = buf .. s
  end
  return buf
end

--- A tlsrekey client connected to a LuaSec echo server.
local function luasec_server(tls12, allow)
  local cpath, kpath = H.cert_files()
  local p = H.spawn { "lua5.4", echo_script(), "server", cpath, kpath, tls12 and "1" or "0",
                      allow and "1" or "0" }
  local port = p:wait_output("LISTENING (%d+)")
  assert(port, "the LuaSec server did not start:\n" .. p:output())
  local cctx = tlsrekey.context { mode = "client", cafile = cpath }
  local c = cctx:connect("127.0.0.1", tonumber(port), { server_hostname = "localhost", timeout = 5 })
  c:do_handshake()
  return c, p
end

--- A tlsrekey server with a LuaSec echo client connected.
local function luasec_client(server_opts, tls12)
  local srv, port = H.listen()
  local cert, key = tlsrekey.make_test_cert("localhost")
  local opts = { mode = "server", cert = cert, key = key }
  for k, v in pairs(server_opts or {}) do opts[k] = v end
  local sctx = tlsrekey.context(opts)
  local p = H.spawn { "lua5.4", echo_script(), "client", tostring(port), "", tls12 and "1" or "0" }
  srv:settimeout(10)
  local sock = assert(srv:accept())
  H.defer(function() sock:close() end)
  local s = sctx:wrap(sock, { timeout = 5 })
  s:do_handshake()
  return s, p
end

local describe_if = have_luasec and describe or pending

describe_if("interop with LuaSec", function()
  after_each(H.cleanup)

  it("client_key_update_requested_is_answered_by_a_luasec_server", function()
    local c, p = luasec_server()
    assert.equal("TLSv1.3", c:version())
    c:key_update("requested")
    c:write("hi\n")
    assert.equal("hi\n", read_line(c)) -- LuaSec's echo carries its answer
    assert.equal(1, c:stats().key_updates_sent)
    assert.equal(1, c:stats().key_updates_received)
    c:key_update("not_requested")
    c:write("again\n")
    assert.equal("again\n", read_line(c))
    assert.equal(2, c:stats().key_updates_sent)
    assert.equal(1, c:stats().key_updates_received)
    assert(p:wait_output("GOT again"), p:output())
  end)

  it("client_renegotiation_with_a_luasec_server_that_allows_it", function()
    local c = luasec_server(true, true)
    assert.equal("TLSv1.2", c:version())
    c:renegotiate()
    c:write("x\n")
    assert.equal("x\n", read_line(c))
    assert.equal(1, c:stats().renegotiations)
    assert.is_false(c:session_reused())
  end)

  it("client_renegotiation_refused_by_a_default_luasec_server", function()
    local c = luasec_server(true, false)
    c:renegotiate()
    local err = H.error_of(function()
      c:write("x\n")
      read_line(c)
    end)
    assert.is_true(tlsrekey.is_error(err), tostring(err))
    assert.equal("protocol", err.code)
  end)

  it("server_key_update_requested_is_answered_by_a_luasec_client", function()
    local s, p = luasec_client()
    assert.equal("TLSv1.3", s:version())
    s:key_update("requested")
    s:write("hi\n")
    assert.equal("hi\n", read_line(s))
    assert.equal(1, s:stats().key_updates_received)
    assert.equal(0, s:stats().key_update_requests_received)
    assert(p:wait_output("GOT hi"), p:output())
  end)

  for _, method in ipairs { "renegotiate", "renegotiate_abbreviated" } do
    it("server_" .. method .. "_is_followed_by_a_luasec_client", function()
      local s = luasec_client({ max_version = "TLSv1.2" }, true)
      assert.equal("TLSv1.2", s:version())
      s[method](s)
      s:write("x\n")
      assert.equal("x\n", read_line(s))
      assert.equal(1, s:stats().hello_requests_sent)
      assert.equal(1, s:stats().renegotiations)
      assert.is_true(s:session_reused())
      s:write("y\n")
      assert.equal("y\n", read_line(s))
    end)
  end
end)
