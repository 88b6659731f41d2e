-- I/O: partial reads and pending(), read_into and buffers, write(""), non-blocking
-- and blocking sockets with timeouts, wrapping LuaSocket objects and raw fds,
-- connect(), memory transports with feed/drain, shutdown, introspection and events.
-- Same case names as tests/python/test_io.py.
local H = require "helpers"
local tlsrekey = H.tlsrekey
local socket = H.socket

describe("I/O", function()
  after_each(H.cleanup)

  for _, T in ipairs(H.transports) do
    it("partial_reads_and_pending over " .. T.name, function()
      local c, s = T.new()
      assert.equal(10, c:write("abcdefghij"))
      local part
      H.read_until(s, function() part = s:read(4); return part ~= nil end)
      assert.equal("abcd", part)
      assert.equal(6, s:pending())
      assert.equal("efghij", s:read())
      assert.equal(0, s:pending())
    end)

    it("read_would_block_returns_nil_and_want_read over " .. T.name, function()
      local c = T.new()
      local data, want = c:read()
      assert.is_nil(data)
      assert.equal("want_read", want)
      local r = table.pack(c:read_into(tlsrekey.buffer(8)))
      assert.same({ n = 2, nil, "want_read" }, r)
    end)

    -- read(n) returns up to n bytes: a huge n gets what has arrived, and the buffer
    -- it makes is as large as what can arrive (a record, or data already here), not
    -- n. read(1 << 40) was "not enough memory", read(1 << 30) took a GiB each call.
    it("a_large_read_size_sets_aside_what_can_arrive_not_what_was_asked over " .. T.name,
       function()
      local c, s = T.new()
      local function read_with(n)
        local deadline = socket.gettime() + 10
        while true do
          local data, want = c:read(n)
          if data then return data end
          assert.truthy(want)
          assert.is_true(socket.gettime() < deadline)
          socket.sleep(0.0002)
        end
      end
      assert.equal(5, s:write("hello"))
      assert.equal("hello", read_with(1 << 40))
      assert.equal(5, s:write("again"))
      assert.equal("again", read_with(math.maxinteger))
      -- the callback runs inside the read, while its buffer is set aside
      local peak
      c:on_event(function() peak = collectgarbage("count") end)
      s:key_update("not_requested")
      assert.equal(1, s:write("x"))
      local before = collectgarbage("count")
      assert.equal("x", read_with(1 << 30))
      assert.truthy(peak)
      assert.is_true(peak - before < 1024, ("%.0f KiB set aside"):format(peak - before))
    end)

    -- read(0) is "" and read_into(buf, 0) 0, as LuaSocket's receive(0) and Python's
    -- read(0): nothing asked, nothing taken, nothing waited for.
    it("a_read_of_nothing_returns_nothing_at_once over " .. T.name, function()
      local c, s = T.new()
      assert.equal("", c:read(0))
      assert.equal(0, c:read_into(tlsrekey.buffer(8), 0))
      assert.equal(4, s:write("kept"))
      assert.equal("", c:read(0))
      local got
      local deadline = socket.gettime() + 10
      while not got do
        got = c:read()
        assert.is_true(socket.gettime() < deadline)
        if not got then socket.sleep(0.0002) end
      end
      assert.equal("kept", got) -- what arrived stays for the next read
      local fresh = tlsrekey.context { mode = "client", verify = false }:memory()
      assert.equal("", fresh:read(0)) -- no handshake started either
      assert.equal("", fresh:drain())
      H.bad_argument(1, "read", function() c:read(-1) end)
      H.bad_argument(2, "read_into", function() c:read_into(tlsrekey.buffer(8), -1) end)
      c:close()
      H.raises("state", function() c:read(0) end) -- a closed connection still says so
    end)

    it("read_into_buffers over " .. T.name, function()
      local c, s = T.new()
      assert.equal(10, s:write("0123456789"))
      local buf = tlsrekey.buffer(4)
      local n
      H.read_until(c, function() n = c:read_into(buf); return n ~= nil end)
      assert.equal(4, n)
      assert.equal("0123", buf:sub())
      local big = tlsrekey.buffer(10)
      assert.equal(3, c:read_into(big, 3)) -- no more than n, though more is there
      assert.equal("456", big:sub(1, 3))
      assert.equal(3, c:pending())
      assert.equal(3, c:read_into(big)) -- what there is: 3 of 10
      assert.equal("789", big:sub(1, 3))
      assert.equal("789" .. ("\0"):rep(7), big:sub()) -- nothing past the count
      assert.equal(0, c:pending())
      -- the counters see the same bytes as with read()
      assert.equal(10, c:stats().bytes_read)
      -- what arrives after a KeyUpdate is read into the buffer too
      s:key_update("requested")
      s:write("after")
      H.read_until(c, function() n = c:read_into(big); return n ~= nil end)
      assert.equal("after", big:sub(1, n))
      assert.equal(1, c:stats().key_updates_received)
    end)

    it("write_from_a_buffer over " .. T.name, function()
      local c, s = T.new()
      local buf = tlsrekey.buffer(64)
      assert.equal(5, c:write("hello"))
      local n
      H.read_until(s, function() n = s:read_into(buf); return n ~= nil end)
      assert.equal(5, n)
      assert.equal(5, s:write(buf, n)) -- the echo: no string in between
      assert.equal("hello", H.read_until(c, function() return c:stats().bytes_read == 5 end))
      assert.equal(3, s:write(buf, 3))
      assert.equal("hel", H.read_until(c, function() return c:stats().bytes_read == 8 end))
      assert.equal(64, s:write(buf)) -- all of it by default
      local all = H.read_until(c, function() return c:stats().bytes_read == 72 end)
      assert.equal("hello" .. ("\0"):rep(59), all)
      -- a length of 0 calls the core like write(""): the owed reply goes out
      c:key_update("requested")
      c:write("x")
      H.read_until(s, function() return s:stats().key_updates_received == 1 end)
      assert.equal("not_requested", s:get_key_update_type())
      assert.equal(0, s:stats().key_updates_sent)
      assert.equal(0, s:write(buf, 0))
      assert.equal(1, s:stats().key_updates_sent)
      assert.equal("none", s:get_key_update_type())
    end)

    it("shutdown_both_ways over " .. T.name, function()
      local c, s = T.new()
      assert.is_false(c:shutdown()) -- close_notify sent, the peer's not yet seen
      H.read_until(s, function() return s:state() == "closed" end)
      assert.is_true(s:shutdown())
      H.read_until(c, function() return c:shutdown() end)
      assert.equal("closed", c:state())
    end)

    it("introspection_and_tostring over " .. T.name, function()
      local c, s = T.new()
      assert.equal("client", c:role())
      assert.equal("server", s:role())
      assert.equal("TLSv1.3", c:version())
      assert.equal("TLS_AES_256_GCM_SHA384", c:cipher())
      assert.is_true(c:secure_renegotiation() == true or c:secure_renegotiation() == false)
      assert.is_false(c:session_reused())
      assert.is_true(c:handshake_done())
      assert.equal("established", c:state())
      assert.equal("tlsrekey.connection client TLSv1.3 TLS_AES_256_GCM_SHA384 established",
                   tostring(c))
      c:key_update("requested")
      assert.equal("tlsrekey.connection client TLSv1.3 TLS_AES_256_GCM_SHA384 established"
                   .. " key_update=requested", tostring(c))
      local info = c:peer_certificate()
      for _, k in ipairs { "subject", "issuer", "serial", "not_before", "not_after", "san", "der" } do
        assert.equal("string", type(info[k]), k)
      end
      assert.truthy(info.san:find("DNS:localhost", 1, true), info.san)
      assert.truthy(info.not_after:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"), info.not_after)
      assert.equal(0x30, info.der:byte(1)) -- a DER SEQUENCE
      assert.is_nil(s:peer_certificate()) -- the client sent none
      local stats = c:stats()
      for _, k in ipairs { "key_updates_sent", "key_updates_received", "key_update_requests_sent",
                           "key_update_requests_received", "renegotiations", "hello_requests_sent",
                           "hello_requests_received", "handshakes", "alerts_sent",
                           "alerts_received", "bytes_written", "bytes_read",
                           "records_written", "records_read" } do
        assert.equal("number", type(stats[k]), k)
      end
      assert.equal(1, stats.handshakes)
    end)

    it("version_and_cipher_are_nil_before_the_handshake over " .. T.name, function()
      local c, s = T.raw()
      assert.is_nil(c:version())
      assert.is_nil(c:cipher())
      assert.is_false(c:handshake_done())
      assert.equal("new", c:state())
      assert.equal("tlsrekey.connection server new", tostring(s))
    end)

    it("exported_keying_material_is_the_same_on_both_ends over " .. T.name, function()
      local c, s = T.new()
      local a = c:export_keying_material("EXPORTER-Channel-Binding", 32)
      local b = s:export_keying_material("EXPORTER-Channel-Binding", 32)
      assert.equal(32, #a)
      assert.equal(a, b)
      assert.are_not.equal(a, c:export_keying_material("EXPORTER-Channel-Binding", 32, "ctx"))
    end)

    it("events_report_handshakes_and_alerts over " .. T.name, function()
      local c, s = T.new()
      local seen = {}
      s:on_event(function(ev)
        seen[#seen + 1] = ev
      end)
      assert.is_nil(s:on_event(s:on_event(nil))) -- returns the previous function
      c:shutdown()
      H.read_until(s, function() return s:state() == "closed" end)
      local alert = seen[#seen]
      assert.equal("alert_received", alert.name)
      assert.equal("warning", alert.alert_level)
      assert.equal(0, alert.alert_description)
      assert.truthy(alert.alert_text:find("close", 1, true))
    end)
  end

  -- A buffer answers as the string of its bytes would: sub(i, j) as
  -- string.sub, byte(i, j) as string.byte, for every index, negative and out of range.
  it("buffer_indices_are_those_of_strings", function()
    local c, s = tlsrekey.pair()
    local text = "abcdefghij"
    local buf = tlsrekey.buffer(#text)
    assert.equal(("\0"):rep(10), buf:sub()) -- a new buffer is all zero
    c:write(text)
    assert.equal(10, s:read_into(buf))
    assert.equal(10, #buf)
    assert.equal("tlsrekey.buffer(10)", tostring(buf))
    assert.equal(text, buf:sub())
    assert.equal(97, buf:byte())
    local big, huge = math.maxinteger, math.mininteger
    local idx = { huge, -big, -12, -11, -10, -9, -2, -1, 0, 1, 2, 9, 10, 11, 12, big }
    for _, i in ipairs(idx) do
      assert.equal(text:sub(i), buf:sub(i), "sub(" .. i .. ")")
      assert.same({ text:byte(i) }, { buf:byte(i) }, "byte(" .. i .. ")")
      for _, j in ipairs(idx) do
        local what = ("(%d, %d)"):format(i, j)
        assert.equal(text:sub(i, j), buf:sub(i, j), "sub" .. what)
        if j - i < 100 or i > j then -- string.byte refuses a huge slice; so do we
          assert.same({ text:byte(i, j) }, { buf:byte(i, j) }, "byte" .. what)
        end
      end
    end
    assert.equal(10, select("#", buf:byte(1, -1)))
    assert.equal(0, select("#", buf:byte(11)))
    local one = tlsrekey.buffer(1)
    assert.equal("\0", one:sub())
    assert.equal(0, one:byte())
  end)

  it("a_buffer_outlives_the_connection_that_filled_it", function()
    local buf = tlsrekey.buffer(16)
    do
      local c, s = tlsrekey.pair()
      c:write("kept")
      assert.equal(4, s:read_into(buf))
      c:close()
      s:close()
    end
    collectgarbage()
    collectgarbage()
    assert.equal("kept", buf:sub(1, 4))
    -- and it serves another connection
    local c, s = tlsrekey.pair()
    assert.equal(4, c:write(buf, 4))
    assert.equal(4, s:read_into(buf, 4))
    assert.equal("kept", buf:sub(1, 4))
  end)

  it("a_large_buffer_reads_several_records", function()
    local c, s = tlsrekey.pair()
    local data = ("0123456789abcdef"):rep(4096) -- 64 KiB: four full records, which
    -- OpenSSL may hand over in fewer reads (49152 + 16384 bytes here)
    assert.equal(#data, c:write(data))
    local buf = tlsrekey.buffer(1 << 20)
    local got = {}
    while true do
      local n, want = s:read_into(buf)
      if not n then
        assert.equal("want_read", want)
        break
      end
      got[#got + 1] = buf:sub(1, n)
    end
    assert.equal(data, table.concat(got))
  end)

  it("write_empty_string_calls_the_core", function()
    local c, s = tlsrekey.pair()
    assert.equal(0, c:write(""))
    c:key_update("not_requested")
    assert.equal(0, c:write("")) -- the scheduled update goes out with it
    assert.equal(1, c:stats().key_updates_sent)
    s:read()
    assert.equal(1, s:stats().key_updates_received)
  end)

  it("wrap_follows_the_luasocket_timeout", function()
    local cctx, sctx, hostname = tlsrekey.pair_contexts()
    local csock, ssock = H.tcp_pair()
    ssock:settimeout(0)
    assert.equal(0, sctx:wrap(ssock):gettimeout())
    ssock:settimeout(2.5)
    assert.equal(2.5, sctx:wrap(ssock):gettimeout())
    ssock:settimeout(-1)
    assert.is_nil(sctx:wrap(ssock):gettimeout())
    assert.equal(1, sctx:wrap(ssock, { timeout = 1 }):gettimeout()) -- opts win
    local c = cctx:wrap(csock, { server_hostname = hostname })
    assert.is_true(c:settimeout(0))
    assert.equal(0, c:gettimeout())
    assert.is_true(c:settimeout(nil))
    assert.is_nil(c:gettimeout())
    assert.equal(csock:getfd(), c:getfd())
  end)

  it("blocking_read_times_out", function()
    local c, s, csock = H.transports[2].new()
    c:settimeout(0.2)
    local t0 = socket.gettime()
    local err = H.raises("timeout", function() c:read() end)
    assert.is_true(socket.gettime() - t0 >= 0.15)
    assert.equal("tlsrekey: timeout: " .. err.message, tostring(err))
    -- still usable
    c:settimeout(0)
    assert.equal("x", H.exchange(s, c, "x"))
    assert.truthy(csock)
  end)

  -- settimeout(x) made the caller's socket non-blocking and neither settimeout(nil)
  -- nor close() made it blocking again. LuaSocket's own sockets are always
  -- non-blocking; a blocking one comes from elsewhere, as inetd or systemd hand one
  -- over: here bash opens it (/dev/tcp) for a child, which wraps its fd and reports
  -- the fd's O_NONBLOCK flag (/proc/self/fdinfo) after each step.
  it("timeouts_leave_the_callers_socket_as_found", function()
    local srv, port = H.listen() -- accepts nothing: the handshakes wait for the server
    local script = [[
      local t = require "tlsrekey"
      local function nonblocking()
        local f = assert(io.open("/proc/self/fdinfo/3"))
        local flags = tonumber(f:read("a"):match("flags:%s*(%d+)"), 8)
        f:close()
        return flags & 0x800 ~= 0 -- O_NONBLOCK (04000 on Linux)
      end
      local out = { "found=" .. tostring(nonblocking()) }
      local function step(name, fn)
        local ok, err = pcall(fn)
        out[#out + 1] = ("%s:%s=%s"):format(name, ok and "ok" or err.code, tostring(nonblocking()))
      end
      local c = t.context({ mode = "client", verify = false }):wrap(3, { timeout = 0.2 })
      step("wrap", function() end)
      step("handshake", function() c:do_handshake() end)
      step("settimeout0", function() c:settimeout(0); c:do_handshake() end)
      step("settimeoutnil", function() c:settimeout(nil) end)
      step("close", function() c:settimeout(0.2); c:close() end)
      io.write(table.concat(out, " "), "\n")
    ]]
    local cmd = ("timeout 30 bash -c %s 2>&1"):format(H.shell_quote(
      ("exec 3<>/dev/tcp/127.0.0.1/%d && exec %s -e %s"):format(
        port, H.shell_quote(os.getenv("LUA") or "lua5.4"), H.shell_quote(script))))
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    p:close()
    assert.equal("found=false wrap:ok=false handshake:timeout=false "
                 .. "settimeout0:want_read=false settimeoutnil:ok=false close:ok=false\n", out)
    assert.truthy(srv)
  end)

  it("wrap_an_integer_fd_and_never_close_it", function()
    local cctx, sctx, hostname = tlsrekey.pair_contexts()
    local csock, ssock = H.tcp_pair()
    local c = cctx:wrap(math.tointeger(csock:getfd()), { server_hostname = hostname, timeout = 0 })
    local s = sctx:wrap(ssock, { timeout = 0 })
    H.drive("do_handshake", c, s)
    assert.equal("x", H.exchange(c, s, "x"))
    c:close()
    s:close()
    -- the sockets are still ours and still open
    assert.is_true(csock:getfd() >= 0)
    assert.equal(5, csock:send("plain"))
    ssock:settimeout(2)
    assert.equal("plain", ssock:receive(5))
  end)

  -- Once the owner closes the wrapped socket, its number may belong to another file
  -- at once: a write put a TLS record into that file and returned 6. The owner's
  -- object is a LuaSocket one, or any object with a getfd method.
  local owners = {
    luasocket = function(sock) return sock end,
    ["getfd object"] = function(sock) return { getfd = function() return sock:getfd() end } end,
  }
  for kind, owner in pairs(owners) do
    it("a_socket_closed_by_its_owner_is_never_used_again (" .. kind .. ")", function()
      local lfs = require "lfs"
      local cctx, sctx, hostname = tlsrekey.pair_contexts()
      local csock, ssock = H.tcp_pair()
      local c = cctx:wrap(owner(csock), { server_hostname = hostname, timeout = 0 })
      local s = sctx:wrap(ssock, { timeout = 0 })
      H.drive("do_handshake", c, s)
      assert.equal("x", H.exchange(c, s, "x"))
      local number = math.tointeger(csock:getfd())
      csock:close()
      -- an unrelated file where the socket was (opened until one lands on its number)
      local path, files = H.tmpname(".unrelated"), {}
      H.defer(function() for _, f in ipairs(files) do f:close() end end)
      local link = ("/proc/self/fd/%d"):format(number)
      for _ = 1, 1000 do
        files[#files + 1] = assert(io.open(path, "a+"))
        if lfs.symlinkattributes(link, "target") == path then break end
      end
      assert.equal(path, lfs.symlinkattributes(link, "target"))
      local calls = {
        function() return c:write("secret") end,
        function() return c:read() end,
        function() return c:read_into(tlsrekey.buffer(8)) end,
        function() return c:do_handshake() end,
        function() return c:key_update("requested", true) end,
        function() return c:shutdown() end,
      }
      for _, call in ipairs(calls) do
        local err = H.raises("state", call)
        assert.matches("closed by its owner", err.message)
      end
      assert.equal(0, lfs.attributes(path, "size"))
      assert.equal("failed", c:state())
      assert.equal(-1, c:getfd())
      c:close()
      assert.equal(path, lfs.symlinkattributes(link, "target")) -- not closed by us either
    end)
  end

  it("connect_opens_and_closes_its_own_socket", function()
    local cctx, sctx, hostname = tlsrekey.pair_contexts()
    local srv, port = H.listen()
    local c = cctx:connect("127.0.0.1", port, { server_hostname = hostname, timeout = 5 })
    srv:settimeout(5)
    local ssock = assert(srv:accept())
    H.defer(function() ssock:close() end)
    local s = sctx:wrap(ssock, { timeout = 0 })
    c:settimeout(0)
    H.drive("do_handshake", c, s)
    assert.equal("hello", H.exchange(c, s, "hello"))
    assert.is_true(c:getfd() >= 0)
    c:close() -- closes the socket connect() opened: the server sees EOF
    ssock:settimeout(2)
    local _, err = ssock:receive(1)
    assert.equal("closed", err)
  end)

  it("connect_to_a_closed_port_is_a_syscall_error", function()
    local cctx = tlsrekey.pair_contexts()
    local port = H.free_port()
    local err = H.raises("syscall", function()
      cctx:connect("127.0.0.1", port, { server_hostname = "localhost", timeout = 2 })
    end)
    assert.is_true(err.errno > 0)
  end)

  it("memory_transport_feed_and_drain", function()
    local cctx, sctx, hostname = tlsrekey.pair_contexts()
    local c, s = cctx:memory { server_hostname = hostname }, sctx:memory()
    H.raises("want_read", function() c:do_handshake() end)
    assert.is_true(c:outgoing() > 0) -- the ClientHello
    local hello = c:drain()
    assert.equal(0, c:outgoing())
    assert.equal("", c:drain())
    s:feed(hello)
    H.memory_handshake(c, s)
    assert.equal("TLSv1.3", s:version())
    c:key_update("requested")
    assert.equal(2, c:write("hi"))
    s:feed(c:drain())
    assert.equal("hi", s:read())
    assert.equal(2, s:write("ok")) -- carries the answer to the request
    c:feed(s:drain())
    assert.equal("ok", c:read())
    assert.equal(1, c:stats().key_updates_received)
    assert.same({ nil, "want_read" }, { c:read() })
  end)
end)

-- Read-ahead: pending() on sockets. The core reads ahead on sockets, so records that
-- have arrived can wait inside the connection while the socket shows nothing; a
-- caller who polls the socket whenever pending() is 0 must never wait for data that
-- is already here. A socket client whose peer is a memory-transport server: the test
-- sends the server's records itself, whole or in pieces (TCP loopback; a wait on the
-- socket is bounded, so that data still in flight is not taken for a failure).
describe("read-ahead and pending() over a TCP socket", function()
  after_each(H.cleanup)

  local function readable(sock, timeout)
    local r = socket.select({ sock }, nil, timeout or 0)
    return #r > 0
  end

  local function hand_fed()
    local cctx, sctx, hostname = tlsrekey.pair_contexts()
    local csock, ssock = H.tcp_pair()
    local h = { csock = csock, ssock = ssock, server = sctx:memory(),
                client = cctx:wrap(csock, { server_hostname = hostname, timeout = 0 }) }
    H.defer(function() h.client:close(); h.server:close() end)
    function h.send(data) assert(ssock:send(data) == #data) end
    function h.record(data)
      assert(h.server:write(data) == #data)
      return h.server:drain()
    end
    function h.key_update_record(kind)
      h.server:key_update(kind or "not_requested", true)
      return h.server:drain()
    end
    ssock:settimeout(0)
    local deadline = socket.gettime() + 10
    repeat
      local cdone = pcall(h.client.do_handshake, h.client)
      local data, _, partial = ssock:receive(65536)
      data = data or partial
      if data and #data > 0 then h.server:feed(data) end
      local sdone = pcall(h.server.do_handshake, h.server)
      local out = h.server:drain()
      if #out > 0 then h.send(out) end
      assert(socket.gettime() < deadline, "the handshake did not finish")
    until cdone and sdone
    assert(readable(csock, 5))
    assert.same({ nil, "want_read" }, { h.client:read() }) -- the session tickets
    ssock:settimeout(5)
    return h
  end

  for _, modes in ipairs { { nil, nil }, { nil, 0 }, { 0, nil }, { 0, 0 }, { 10, 0 }, { 0, 10 } } do
    local first, after = modes[1], modes[2]
    it(("pending_counts_a_record_read_ahead_behind_another (%s, then %s)"):format(
         tostring(first), tostring(after)), function()
      local h = hand_fed()
      h.client:settimeout(first)
      h.send(h.record("first") .. h.record("second"))
      assert(readable(h.csock, 5))
      assert.equal("first", h.client:read())
      assert.is_false(readable(h.csock)) -- both records were taken from the socket
      assert.is_true(h.client:pending() > 0)
      h.client:settimeout(after)
      assert.equal("second", h.client:read())
      assert.equal(0, h.client:pending())
    end)
  end

  it("pending_does_not_count_part_of_a_record", function()
    local h = hand_fed()
    local whole, big = h.record("third"), h.record(("b"):rep(10000))
    h.send(whole .. big:sub(1, 100))
    assert(readable(h.csock, 5))
    assert.equal("third", h.client:read())
    assert.equal(0, h.client:pending()) -- the rest is on its way: the socket shows it
    assert.same({ nil, "want_read" }, { h.client:read() })
    assert.equal(0, h.client:pending())
    h.send(big:sub(101))
    assert.is_true(readable(h.csock, 5))
    local got = {}
    for _ = 1, 100 do
      local d = h.client:read(20000)
      if d then got[#got + 1] = d end
      if #table.concat(got) == 10000 then break end
      readable(h.csock, 1)
    end
    assert.equal(("b"):rep(10000), table.concat(got))
  end)

  it("pending_counts_a_key_update_until_a_read_takes_it_in", function()
    local h = hand_fed()
    h.send(h.record("x") .. h.key_update_record())
    assert(readable(h.csock, 5))
    assert.equal("x", h.client:read())
    assert.equal(1, h.client:pending()) -- a whole record: it may carry no data
    assert.same({ nil, "want_read" }, { h.client:read() })
    assert.equal(0, h.client:pending())
    assert.equal(1, h.client:stats().key_updates_received)
  end)

  -- Records of random sizes up to 40 KB writes, key updates requested and not, read
  -- in random sizes and modes: on OpenSSL 3.2+ a record layer that switched off
  -- read-ahead lost its place at the next key update (io.c, read_ahead_follows).
  for seed = 1, 8 do
    it("a_caller_who_polls_when_pending_is_zero_never_misses_data (seed " .. seed .. ")",
       function()
      local h = hand_fed()
      math.randomseed(seed)
      local stream, ends = {}, {} -- ends: { offset where a record ends, its data }
      local len = 0
      local function add(bytes, data)
        stream[#stream + 1] = bytes
        len = len + #bytes
        ends[#ends + 1] = { len, data }
      end
      for i = 1, 40 do
        local r = math.random()
        if r < 0.15 then add(h.key_update_record(), "")
        elseif r < 0.25 then add(h.key_update_record("requested"), "") end
        local sizes = { 1, 64, math.random(1, 3000), math.random(1, 16384),
                        math.random(16385, 40000) }
        local data = string.char(64 + i % 26):rep(sizes[math.random(#sizes)])
        for at = 1, #data, 16384 do -- one record each, so that `ends` is exact
          local part = data:sub(at, at + 16383)
          add(h.record(part), part)
        end
      end
      stream = table.concat(stream)
      local sent, got = 0, {}
      local function received() return table.concat(got) end
      while sent < #stream do
        local pieces = { 1, 5, 37, 600, 5000, 20000 }
        local piece = pieces[math.random(#pieces)]
        h.send(stream:sub(sent + 1, sent + piece))
        sent = math.min(#stream, sent + piece)
        local parts = {}
        for _, e in ipairs(ends) do
          if e[1] <= sent then parts[#parts + 1] = e[2] end
        end
        local arrived = table.concat(parts)
        if math.random() < 0.3 then -- blocking: read exactly what has arrived whole
          h.client:settimeout(math.random() < 0.5 and 10 or nil)
          while #received() < #arrived do
            local want = math.min(#arrived - #received(), ({ 1, 7, 100, 4096, 65536 })[math.random(5)])
            got[#got + 1] = assert(h.client:read(want))
          end
        end
        h.client:settimeout(0)
        -- a poller: reads while pending() says so or the socket is readable; it
        -- waits on the socket a little while data it expects may still be in flight
        for _ = 1, 1000 do
          if h.client:pending() == 0 and
             not readable(h.csock, #received() < #arrived and 2 or 0) then break end
          local d, want = h.client:read(({ 1, 7, 100, 4096, 16384, 65536 })[math.random(6)])
          if d then got[#got + 1] = d
          else
            assert.equal("want_read", want)
            assert.equal(0, h.client:pending())
          end
        end
        assert(received() == arrived, "data arrived whole but pending() said 0")
      end
    end)
  end
end)
