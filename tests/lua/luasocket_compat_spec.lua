-- tlsrekey_compat: a tlsrekey connection over a LuaSocket tcp object that answers
-- LuaSocket's and LuaSec's calls (send, receive with "*l"/"l", "*a"/"a" and byte
-- counts, settimeout, close, getfd, dohandshake, dirty, want) with their return
-- conventions, so that existing code switches with one line. In-process over a TCP
-- loopback pair, and against LuaSec-style scripts and openssl s_server in child
-- processes (killed by pid when each case ends).
local H = require "helpers"
local tlsrekey = H.tlsrekey
local socket = H.socket
local compat = require "tlsrekey_compat"

local have_openssl = os.execute("openssl version >/dev/null 2>&1")
local have_luasec = pcall(require, "ssl")

--- Drives dohandshake on both objects (non-blocking) until both are done.
local function handshake(a, b)
  local done_a, done_b = false, false
  local deadline = socket.gettime() + 5
  while not (done_a and done_b) do
    if not done_a then
      local ok, err = a:dohandshake()
      if ok then done_a = true else assert(err == "wantread" or err == "wantwrite", err) end
    end
    if not done_b then
      local ok, err = b:dohandshake()
      if ok then done_b = true else assert(err == "wantread" or err == "wantwrite", err) end
    end
    assert(socket.gettime() < deadline, "the handshake did not finish")
    socket.sleep(0.001)
  end
end

--- A handshaken client and server, each a wrapped LuaSocket object, timeout 5 s.
local function wrapped_pair(opts)
  local cctx, sctx, hostname = tlsrekey.pair_contexts(opts)
  local csock, ssock = H.tcp_pair()
  local c = assert(compat.wrap(csock, cctx, { server_hostname = hostname }))
  local s = assert(compat.wrap(ssock, sctx))
  H.defer(function() c:close(); s:close() end)
  c:settimeout(0)
  s:settimeout(0)
  handshake(c, s)
  c:settimeout(5)
  s:settimeout(5)
  return c, s, csock, ssock
end

--- Sends all of data from a non-blocking object, reading on `reader` meanwhile;
-- returns what the reader got.
local function stream(from, to, data)
  from:settimeout(0)
  to:settimeout(0)
  local i, got = 1, {}
  local have = 0
  local deadline = socket.gettime() + 10
  while i <= #data or have < #data do
    if i <= #data then
      local last, err, sent = from:send(data, i)
      if last then i = last + 1 else
        assert.equal("timeout", err)
        assert(sent >= i - 1 and sent < #data, "send reported " .. tostring(sent))
        i = sent + 1
      end
    end
    local chunk, err, partial = to:receive(math.min(#data - have, 65536))
    chunk = chunk or partial
    assert(chunk or err == "timeout", err)
    if #chunk > 0 then got[#got + 1] = chunk; have = have + #chunk end
    assert(socket.gettime() < deadline, "stream did not finish")
  end
  return table.concat(got)
end

describe("tlsrekey_compat over a TCP socket pair", function()
  after_each(H.cleanup)

  -- A core bug found here (fixed in 8b34344): a WANT status left the caller's
  -- trk_error unfilled, so the want_read error object of do_handshake carried a
  -- stale message (or made ASan report a stack-buffer-overflow in ltrk_push_error).
  it("want_read_error_from_do_handshake_carries_no_stale_message", function()
    local c = tlsrekey.context { mode = "client", verify = false }:memory()
    H.raises("state", function() c:key_update() end)
    local err = H.raises("want_read", function() c:do_handshake() end)
    assert.is_nil(err.message:find("key_update", 1, true), err.message)
    c:close()
  end)

  it("nonblocking_dohandshake_says_wantread_like_luasec", function()
    local cctx, sctx, hostname = tlsrekey.pair_contexts()
    local csock, ssock = H.tcp_pair()
    local c = compat.wrap(csock, cctx, { server_hostname = hostname })
    local s = compat.wrap(ssock, sctx)
    H.defer(function() c:close(); s:close() end)
    c:settimeout(0)
    s:settimeout(0)
    local ok, err = s:dohandshake()           -- nothing from the client yet
    assert.is_nil(ok)
    assert.equal("wantread", err)
    assert.equal("read", s:want())
    handshake(c, s)
    assert.equal("TLSv1.3", c:info("protocol"))
    assert.equal("TLSv1.3", c:info().protocol)
    assert.equal("nothing", c:want())
  end)

  it("receive_line_pattern_drops_cr_and_lf", function()
    local c, s = wrapped_pair()
    assert.equal(21, s:send("first\r\nsecond\nthird\r\n"))
    assert.equal("first", c:receive("*l"))
    assert.equal("second", c:receive("l"))
    assert.equal("third", c:receive())            -- "*l" is the default
  end)

  it("receive_takes_lines_and_counts_across_records_in_any_mix", function()
    -- The buffer keeps the records as they came: a 1 MiB line spread over many
    -- records, and thousands of short lines inside one record, in one stream.
    local c, s = wrapped_pair()
    local long = ("L"):rep(1024 * 1024 - 3)
    local shorts = {}
    for i = 1, 3000 do shorts[i] = tostring(i) end
    local text = long .. "\r\n" .. table.concat(shorts, "\n") .. "\nabcdefgh"
    -- 1 MiB fits the loopback socket's buffers: send it all, then receive
    assert.equal(#text, s:send(text))
    local step = function(pattern) return assert(c:receive(pattern)) end
    assert.equal(long, step("*l"))
    for i = 1, 3000 do assert.equal(tostring(i), step(i % 2 == 0 and "l" or "*l")) end
    assert.equal("abc", step(3))
    assert.equal("defgh", step(5))
  end)

  it("receive_byte_count_and_prefix_follow_luasocket", function()
    local c, s = wrapped_pair()
    s:send("abcdefghij")
    assert.equal("abc", c:receive(3))
    -- the count includes the prefix, as in LuaSocket
    assert.equal("XYdef", c:receive(5, "XY"))
    assert.equal("pre", c:receive(2, "pre"))      -- prefix already long enough
    assert.equal("ghij", c:receive(4))
  end)

  it("receive_all_returns_everything_when_the_peer_closes", function()
    local c, s = wrapped_pair()
    s:send("one\n")
    s:send("two\n")
    s:close()
    assert.equal("one\ntwo\n", c:receive("*a"))
    local data, err, partial = c:receive("*l")
    assert.is_nil(data)
    assert.equal("closed", err)
    assert.equal("", partial)
  end)

  it("receive_timeout_returns_the_partial_data", function()
    local c, s = wrapped_pair()
    c:settimeout(0.1)
    local t0 = socket.gettime()
    local data, err, partial = c:receive("*l")
    assert.is_nil(data)
    assert.equal("timeout", err)
    assert.equal("", partial)
    assert.is_true(socket.gettime() - t0 >= 0.09)
    s:send("abc")
    data, err, partial = c:receive("*l")
    assert.equal("timeout", err)
    assert.equal("abc", partial)
    s:send("def\n")
    assert.equal("abcdef", c:receive("*l", partial))
    s:send("12")
    data, err, partial = c:receive(4)
    assert.equal("timeout", err)
    assert.equal("12", partial)
    s:send("34")
    assert.equal("1234", c:receive(4, partial))
  end)

  it("receive_after_the_peer_closed_says_closed_with_the_partial_line", function()
    local c, s = wrapped_pair()
    s:send("no newline")
    s:close()
    local data, err, partial = c:receive("*l")
    assert.is_nil(data)
    assert.equal("closed", err)
    assert.equal("no newline", partial)
  end)

  it("send_takes_i_and_j_and_returns_the_last_index", function()
    local c, s = wrapped_pair()
    assert.equal(5, c:send("hello world", 1, 5))
    assert.equal(11, c:send("hello world", 7))
    assert.equal(3, c:send("xyz", -3))
    assert.equal(0, c:send(""))
    assert.equal("helloworldxyz", s:receive(13))
  end)

  it("nonblocking_send_reports_progress_and_resumes_from_it", function()
    local c, s = wrapped_pair()
    local parts = {}
    for i = 1, 4096 do parts[i] = ("%07d|"):format(i):rep(128) end
    local data = table.concat(parts)               -- 4 MiB: more than the socket takes
    c:settimeout(0)
    local last, err, sent = c:send(data)
    assert.is_nil(last)
    assert.equal("timeout", err)
    assert.is_true(sent > 0 and sent < #data)
    assert.equal("write", c:want())
    local got = s:receive(sent)
    assert.equal(data:sub(1, sent), got)
    assert.equal(data:sub(sent + 1), stream(c, s, data:sub(sent + 1)))
  end)

  it("send_counts_what_went_out_before_an_event_callback_failed", function()
    -- the callback fails at the key update the send makes; the piece it was in
    -- went out: send says so, and a retry from sent + 1 doubles nothing
    local c, s = wrapped_pair { max_version = "TLSv1.3" }
    local parts = {}
    for i = 1, 2000 do parts[i] = ("PAY-%04d;"):format(i) end
    local data = table.concat(parts)
    c:connection():on_event(function(ev)
      if ev.name == "key_update_sent" then error("boom") end
    end)
    c:connection():key_update("not_requested", false)
    local last, err, sent = c:send(data)
    assert.is_nil(last)
    assert.truthy(tostring(err):find("boom", 1, true))
    assert.is_true(sent > 0)
    c:connection():on_event(nil)
    assert.equal(#data, c:send(data, sent + 1))
    assert.equal(data, s:receive(#data))
  end)

  it("getfd_is_the_sockets_and_close_closes_the_socket", function()
    local c, _, csock = wrapped_pair()
    local fd = csock:getfd()
    assert.equal(fd, c:getfd())
    assert.equal(1, c:close())
    assert.equal(1, c:close())                     -- idempotent
    assert.is_true(csock:getfd() < 0)              -- LuaSocket's closed socket
    local data, err = c:receive()
    assert.is_nil(data)
    assert.equal("closed", err)
    assert.equal("tlsrekey_compat.connection (closed)", tostring(c))
  end)

  it("socket_select_takes_wrapped_objects_and_dirty_reports_buffered_data", function()
    local c, s = wrapped_pair()
    c:settimeout(0)
    assert.equal("timeout", select(2, c:receive()))  -- takes in the session tickets
    local r, _, err = socket.select({ c }, nil, 0.05)
    assert.equal(0, #r)
    assert.equal("timeout", err)
    s:send("line one\nline two\n")
    r = socket.select({ c }, nil, 2)
    assert.equal(c, r[1])
    assert.equal("line one", c:receive())
    -- the second line is buffered: select answers at once, by dirty()
    assert.is_true(c:dirty())
    r = socket.select({ c }, nil, 0)
    assert.equal(c, r[1])
    assert.equal("line two", c:receive())
    assert.is_false(c:dirty())
  end)

  it("key_update_mid_stream_on_the_wrapped_objects", function()
    local c, s = wrapped_pair()
    assert.equal(4, c:send("one\n"))
    c:key_update("requested")                    -- a tlsrekey method, same object
    assert.equal("requested", c:get_key_update_type())
    c:send("two\n")
    assert.equal("one", s:receive())
    assert.equal("two", s:receive())
    assert.equal(1, s:stats().key_update_requests_received)
    assert.equal("not_requested", s:get_key_update_type())   -- the owed reply
    s:send("three\n")                                        -- carries it
    assert.equal("three", c:receive())
    assert.equal(1, c:stats().key_updates_received)
    assert.equal(1, s:stats().key_updates_sent)
    assert.equal(stream(c, s, ("x"):rep(100000)), ("x"):rep(100000))
  end)

  it("renegotiation_on_tls12_through_the_wrapped_objects", function()
    local c, s = wrapped_pair { max_version = "TLSv1.2" }
    assert.equal("TLSv1.2", c:version())
    s:renegotiate()                               -- a HelloRequest with the next I/O
    assert.is_true(s:renegotiate_pending())
    s:settimeout(0)
    c:settimeout(0)
    s:send("hello\n")
    local deadline = socket.gettime() + 5
    local line, err, partial = nil, nil, ""
    while not line or s:renegotiate_pending() or c:renegotiate_pending() do
      local got
      got, err, partial = c:receive("*l", partial)
      assert(got or err == "timeout", err)
      line = line or got
      s:receive(1)                                -- carries the server's side on
      assert(socket.gettime() < deadline, "the renegotiation did not finish")
      socket.sleep(0.001)
    end
    assert.equal("hello", line)
    assert.equal(1, c:stats().hello_requests_received)
    assert.equal(1, c:stats().renegotiations)
    local e = H.raises("state", function() c:key_update() end)  -- still raises
    assert.matches("TLS 1%.3", e.message)
  end)

  it("newcontext_and_wrap_return_nil_and_a_message", function()
    local ctx, err = compat.newcontext { mode = "sideways" }
    assert.is_nil(ctx)
    assert.matches("mode", err)
    ctx, err = compat.newcontext { mode = "server", certificate = "/nonexistent.pem" }
    assert.is_nil(ctx)
    assert.is_string(err)
    local conn
    conn, err = compat.wrap("not a socket", { mode = "client" })
    assert.is_nil(conn)
    assert.matches("LuaSocket", err)
  end)

  it("luasec_parameters_make_a_working_context", function()
    local cpath, kpath = H.cert_files()
    local csock, ssock = H.tcp_pair()
    local c = assert(compat.wrap(csock, { mode = "client", protocol = "tlsv1_2",
                                          verify = "peer", cafile = cpath }))
    local s = assert(compat.wrap(ssock, { mode = "server", protocol = "any",
                                          certificate = cpath, key = kpath }))
    H.defer(function() c:close(); s:close() end)
    c:sni("localhost")
    c:settimeout(0)
    s:settimeout(0)
    handshake(c, s)
    assert.equal("TLSv1.2", c:info("protocol"))
    assert.is_true(compat.is_wrapped(c))
    assert.is_false(compat.is_wrapped(csock))
  end)

  it("dohandshake_failure_returns_nil_and_one_readable_line", function()
    local _, sctx = tlsrekey.pair_contexts()
    local other = tlsrekey.make_test_cert("localhost")   -- trusted by nobody
    local csock, ssock = H.tcp_pair()
    local c = compat.wrap(csock, { mode = "client", verify = "peer", cafile = other })
    local s = compat.wrap(ssock, sctx)
    H.defer(function() c:close(); s:close() end)
    c:settimeout(0)
    s:settimeout(0)
    local cerr
    local deadline = socket.gettime() + 5
    repeat
      local ok, err = c:dohandshake()
      if not ok and err ~= "wantread" and err ~= "wantwrite" then cerr = err end
      s:dohandshake()
      assert(socket.gettime() < deadline)
    until cerr
    assert.is_string(cerr)
    assert.matches("certificate verify failed", cerr)
    assert.is_nil(cerr:find("\n"))
  end)
end)

-- ---------------------------------------------------------------------------
-- The same LuaSec program, once with require "ssl" and once with
-- require "tlsrekey_compat": the one line that changes.

local ECHO = [[
local socket = require "socket"
local ssl = require(arg[1])           -- "ssl" (LuaSec) or "tlsrekey_compat"
local role, a, b = arg[2], arg[3], arg[4]
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
if role == "server" then
  local srv = assert(socket.bind("127.0.0.1", 0))
  print("LISTENING " .. select(2, srv:getsockname()))
  io.stdout:flush()
  srv:settimeout(10)
  local sock = assert(srv:accept())
  local conn = assert(ssl.wrap(sock, { mode = "server", protocol = "any", certificate = a,
                                       key = b, options = { "all" } }))
  conn:settimeout(10)
  echo(conn)
else
  local sock = socket.tcp()
  sock:settimeout(10)
  assert(sock:connect("127.0.0.1", tonumber(a)))
  local conn = assert(ssl.wrap(sock, { mode = "client", protocol = "any", verify = "none",
                                       options = { "all" } }))
  conn:settimeout(10)
  echo(conn)
end
]]

--- Runs the echo script in a child lua5.4 with `module`. LuaSec's child runs without
-- the sanitizer runtime the ASan suite preloads (its leaks are not ours); ours keeps
-- it, since it loads our sanitized module (H.spawn drops it, the env re-adds it).
local function spawn_echo(module, ...)
  local path = H.tmpname(".lua")
  H.write_file(path, ECHO)
  local argv = {}
  if module ~= "ssl" then
    argv = { "env" }
    for _, k in ipairs { "LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS" } do
      argv[#argv + 1] = k .. "=" .. (os.getenv(k) or "")
    end
  end
  for _, a in ipairs { "lua5.4", path, module, ... } do argv[#argv + 1] = a end
  return H.spawn(argv)
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

local modules = { "tlsrekey_compat" }
if have_luasec then table.insert(modules, 1, "ssl") end

describe("a LuaSec program switched with one line", function()
  after_each(H.cleanup)

  for _, module in ipairs(modules) do
    it("echo_server_with_" .. module .. "_follows_key_updates", function()
      local cpath, kpath = H.cert_files()
      local p = spawn_echo(module, "server", cpath, kpath)
      local port = p:wait_output("LISTENING (%d+)")
      assert(port, "the echo server did not start:\n" .. p:output())
      local cctx = tlsrekey.context { mode = "client", cafile = cpath }
      local c = cctx:connect("127.0.0.1", tonumber(port),
                             { server_hostname = "localhost", timeout = 5 })
      c:do_handshake()
      assert(p:wait_output("HANDSHAKEN TLSv1%.3"), p:output())
      for i = 1, 5 do
        c:key_update(i % 2 == 1 and "requested" or "not_requested")
        c:write("line " .. i .. "\n")
        assert.equal("line " .. i .. "\n", read_line(c))
      end
      assert.equal(5, c:stats().key_updates_sent)
      assert.equal(3, c:stats().key_updates_received)  -- the answers to requests
      c:shutdown()
      assert(p:wait_output("END closed"), p:output())
    end)

    it("echo_client_with_" .. module .. "_talks_to_a_tlsrekey_server", function()
      local srv, port = H.listen()
      local cert, key = tlsrekey.make_test_cert("localhost")
      local sctx = tlsrekey.context { mode = "server", cert = cert, key = key }
      local p = spawn_echo(module, "client", tostring(port))
      srv:settimeout(5)
      local sock = assert(srv:accept())
      H.defer(function() sock:close() end)
      local s = sctx:wrap(sock, { timeout = 5 })
      s:do_handshake()
      s:key_update("requested")
      s:write("hello\n")
      assert.equal("hello\n", read_line(s))
      assert.equal(1, s:stats().key_updates_received)
      s:shutdown()
      assert(p:wait_output("END closed"), p:output())
    end)
  end
end)

local describe_if = have_openssl and describe or pending

describe_if("tlsrekey_compat against openssl s_server", function()
  after_each(H.cleanup)

  it("key_updates_from_the_wrapped_client_are_counted_by_s_server", function()
    local cpath, kpath = H.cert_files()
    local port = H.free_port()
    local p = H.spawn { "openssl", "s_server", "-accept", "127.0.0.1:" .. port, "-cert",
                        cpath, "-key", kpath, "-msg", "-naccept", "1" }
    assert(p:wait_output("ACCEPT"), p:output())
    local sock = H.connect_retry(port)
    local c = assert(compat.wrap(sock, { mode = "client", verify = "peer", cafile = cpath,
                                         check_hostname = true }))
    c:sni("localhost")
    c:settimeout(5)
    assert(c:dohandshake())
    c:key_update()
    assert.equal(6, c:send("hello\n"))
    c:key_update("requested")
    assert.equal(6, c:send("again\n"))
    assert(p:wait_output("again"), p:output())
    local got = p:wait_count("<<< TLS 1%.3, Handshake %[length %x+%], KeyUpdate", 2)
    assert.equal(2, got)
    p:send("reply")                                -- s_server's answer rides on it
    assert.equal("reply", c:receive("*l"))
    assert.equal(1, c:stats().key_updates_received)
    c:close()
  end)
end)
