-- Interop with OpenSSL's own peers: a tlsrekey client against `openssl s_server` and
-- `openssl s_client` against a tlsrekey server, on 127.0.0.1 with a free port. Key
-- update both ways on TLS 1.3 (the peers' `k`/`K` commands; KeyUpdates counted in
-- their -msg output) and renegotiation on TLS 1.2 (`r` / `R`). Every peer process is
-- started with a pid file and killed by pid when the case ends.
local H = require "helpers"
local tlsrekey = H.tlsrekey

local SENT_KU = ">>> TLS 1%.3, Handshake %[length %x+%], KeyUpdate"
local RECV_KU = "<<< TLS 1%.3, Handshake %[length %x+%], KeyUpdate"
local RECV_CH = "<<< TLS 1%.%d, Handshake %[length %x+%], ClientHello"
local SENT_CH = ">>> TLS 1%.%d, Handshake %[length %x+%], ClientHello"

local have_openssl = os.execute("openssl version >/dev/null 2>&1")

--- Reads on a blocking connection until a whole line arrived.
local function read_line(conn)
  local buf = ""
  while not buf:find("\n", 1, true) do
    local s = conn:read()
    assert(s, "the peer closed the connection")
    buf = buf .. s
  end
  return buf
end

--- The peers read their stdin in whatever chunks arrive and take a command only when
-- it is alone in a chunk ("k\n"): give each command a moment of its own.
local function command(p, letter)
  p:send(letter)
  H.socket.sleep(0.3)
end

local function s_server(args)
  local port = H.free_port()
  local cpath, kpath = H.cert_files()
  local argv = { "openssl", "s_server", "-accept", "127.0.0.1:" .. port, "-cert", cpath,
                 "-key", kpath, "-msg", "-naccept", "1" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local p = H.spawn(argv)
  assert(p:wait_output("ACCEPT"), "s_server did not start:\n" .. p:output())
  local cctx = tlsrekey.context { mode = "client", cafile = cpath }
  local c = cctx:connect("127.0.0.1", port, { server_hostname = "localhost", timeout = 5 })
  c:do_handshake()
  return c, p
end

local function s_client(server_opts, args)
  local srv, port = H.listen()
  local cert, key = tlsrekey.make_test_cert("localhost")
  local opts = { mode = "server", cert = cert, key = key }
  for k, v in pairs(server_opts or {}) do opts[k] = v end
  local sctx = tlsrekey.context(opts)
  local argv = { "openssl", "s_client", "-connect", "127.0.0.1:" .. port, "-msg" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local p = H.spawn(argv)
  srv:settimeout(5)
  local sock = assert(srv:accept())
  H.defer(function() sock:close() end)
  local s = sctx:wrap(sock, { timeout = 5 })
  s:do_handshake()
  return s, p
end

local function wait_count(p, pattern, n)
  local got = p:wait_count(pattern, n)
  assert(got == n, ("expected %d x %q in the peer's output, saw %d:\n%s")
         :format(n, pattern, got, p:output()))
end

local describe_if = have_openssl and describe or pending

describe_if("interop with openssl s_server (tlsrekey client)", function()
  after_each(H.cleanup)

  it("client_key_update_requested_is_answered_by_s_server", function()
    local c, p = s_server()
    assert.equal("TLSv1.3", c:version())
    c:key_update("requested")
    assert.equal(6, c:write("hello\n"))
    assert(p:wait_output("hello"), p:output())
    wait_count(p, RECV_KU, 1)
    p:send("reply") -- s_server's next write carries its answer
    assert.equal("reply\n", read_line(c))
    assert.equal(1, c:stats().key_updates_received)
    wait_count(p, SENT_KU, 1)
  end)

  it("s_server_key_update_is_followed_by_the_client", function()
    local c, p = s_server()
    command(p, "k")
    p:send("one")
    assert.equal("one\n", read_line(c))
    assert.equal(1, c:stats().key_updates_received)
    assert.equal(0, c:stats().key_update_requests_received)
    command(p, "K")
    p:send("two")
    assert.equal("two\n", read_line(c))
    assert.equal(1, c:stats().key_update_requests_received)
    assert.equal("not_requested", c:get_key_update_type()) -- the owed answer
    assert.equal(0, c:write(""))
    assert.equal("none", c:get_key_update_type())
    wait_count(p, RECV_KU, 1)
  end)

  it("client_renegotiation_on_tls12", function()
    local c, p = s_server { "-tls1_2", "-client_renegotiation" }
    assert.equal("TLSv1.2", c:version())
    c:renegotiate()
    assert.equal(2, c:write("x\n"))
    assert.equal(1, c:stats().renegotiations)
    assert.is_false(c:renegotiate_pending())
    wait_count(p, RECV_CH, 2)
    p:send("after")
    assert.equal("after\n", read_line(c))
  end)

  it("client_renegotiation_refused_by_s_server_is_a_clear_error", function()
    local c = s_server { "-tls1_2" }
    c:renegotiate()
    local err = H.error_of(function()
      c:write("x\n")
      c:read()
    end)
    assert.is_true(tlsrekey.is_error(err), tostring(err))
    assert.equal("protocol", err.code)
  end)

  it("s_server_renegotiation_is_transparent_to_the_client", function()
    local c, p = s_server { "-tls1_2" }
    command(p, "r")
    -- the read answers the HelloRequest and completes the handshake, then waits for
    -- data that does not come (s_server would otherwise send data mid-handshake)
    c:settimeout(1)
    H.raises("timeout", function() c:read() end)
    c:settimeout(5)
    p:send("after")
    assert.equal("after\n", read_line(c))
    assert.equal(1, c:stats().hello_requests_received)
    assert.equal(1, c:stats().renegotiations)
    assert.is_true(c:session_reused())
  end)
end)

describe_if("interop with openssl s_client (tlsrekey server)", function()
  after_each(H.cleanup)

  it("server_key_update_requested_is_answered_by_s_client", function()
    local s, p = s_client()
    assert.equal("TLSv1.3", s:version())
    s:key_update("requested", true)
    wait_count(p, RECV_KU, 1)
    p:send("hello") -- s_client's next write carries its answer
    assert.equal("hello\n", read_line(s))
    assert.equal(1, s:stats().key_updates_received)
    wait_count(p, SENT_KU, 1)
  end)

  it("s_client_key_update_is_followed_by_the_server", function()
    local s, p = s_client()
    command(p, "K")
    p:send("data")
    assert.equal("data\n", read_line(s))
    assert.equal(1, s:stats().key_update_requests_received)
    assert.equal(1, s:write("y")) -- the answer goes first
    wait_count(p, RECV_KU, 1)
    assert(p:wait_output("\ny") or p:wait_output("y"), p:output())
  end)

  it("s_client_renegotiation_accepted_with_allow_client_renegotiation", function()
    local s, p = s_client({ max_version = "TLSv1.2", allow_client_renegotiation = true })
    assert.equal("TLSv1.2", s:version())
    command(p, "R")
    p:send("data")
    assert.equal("data\n", read_line(s))
    assert.equal(1, s:stats().renegotiations)
  end)

  it("s_client_renegotiation_refused_by_default", function()
    local s, p = s_client({ max_version = "TLSv1.2" })
    command(p, "R")
    local err = H.error_of(function()
      for _ = 1, 5 do read_line(s) end
    end)
    assert.is_true(tlsrekey.is_error(err), tostring(err))
    assert.equal(0, s:stats().renegotiations)
    assert(p:wait_output("no renegotiation"), p:output())
  end)

  it("server_renegotiation_is_followed_by_s_client", function()
    local s, p = s_client({ max_version = "TLSv1.2" })
    s:renegotiate()
    s:do_handshake() -- sends the HelloRequest
    wait_count(p, SENT_CH, 2) -- s_client answered it with a new ClientHello
    p:send("data")
    assert.equal("data\n", read_line(s))
    assert.equal(1, s:stats().renegotiations)
    assert.equal(1, s:stats().hello_requests_sent)
    assert.is_false(s:renegotiate_pending())
  end)
end)
