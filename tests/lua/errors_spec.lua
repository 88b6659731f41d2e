-- Errors: the error object, statuses, seed statement 12 (each OpenSSL failure
-- carries library and reason, nothing stale afterwards), fatal errors remembered,
-- unexpected EOF, errors raised in event callbacks, and bad arguments to every
-- public function. Same case names as tests/python/test_errors.py.
local H = require "helpers"
local tlsrekey = H.tlsrekey
local core = require "tlsrekey.core"

describe("errors", function()
  after_each(H.cleanup)

  it("error_object_has_every_field_and_one_line_tostring", function()
    local c = tlsrekey.pair()
    local err = H.raises("state", function() c:renegotiate() end)
    assert.equal("string", type(err.code))
    assert.equal("string", type(err.message))
    assert.equal("string", type(err.reason))
    assert.equal("number", type(err.ssl_error))
    assert.equal("number", type(err.errno))
    assert.equal("number", type(err.verify_code))
    assert.equal("table", type(err.errors))
    local line = tostring(err)
    assert.equal("tlsrekey: state: " .. err.message, line)
    assert.is_nil(line:find("\n", 1, true))
    assert.is_true(tlsrekey.is_error(err))
    assert.is_false(tlsrekey.is_error({ code = "state" }))
    assert.is_false(tlsrekey.is_error("state"))
    -- one metatable for all of them
    local other = H.raises("state", function() c:renegotiate_abbreviated() end)
    assert.equal(getmetatable(err), getmetatable(other))
  end)

  it("every_status_has_a_lua_name", function()
    local seen = {}
    for _, name in ipairs(tlsrekey.statuses) do
      assert.equal("string", type(name))
      assert.is_nil(seen[name])
      seen[name] = true
    end
    for _, name in ipairs { "ok", "want_read", "want_write", "closed", "syscall", "protocol",
                            "verify", "state", "timeout", "arg", "callback" } do
      assert.is_true(seen[name], name)
    end
  end)

  it("verify_failure_carries_library_reason_and_the_queue", function()
    local _, sctx = tlsrekey.pair_contexts()
    local other_ca = tlsrekey.make_test_cert("localhost") -- not the server's
    local cctx = tlsrekey.context { mode = "client", cafile = other_ca }
    local err = H.raises("verify", function()
      core.pair { client_ctx = cctx, server_ctx = sctx, server_hostname = "localhost" }
    end)
    assert.is_true(err.verify_code > 0)
    assert.equal("certificate verify failed", err.reason)
    assert.equal("string", type(err.library))
    assert.is_true(#err.errors >= 1)
    assert.truthy(err.errors[1]:find("certificate verify failed", 1, true))
    -- nothing stale leaks into the next call
    local c, s = tlsrekey.pair()
    assert.equal("x", H.exchange(c, s, "x"))
  end)

  it("a_getter_in_an_event_callback_keeps_the_failing_calls_error", function()
    local cctx, sctx = tlsrekey.pair_contexts()
    local c, s = cctx:memory { server_hostname = "wrong.example" }, sctx:memory()
    local seen = {}
    c:on_event(function(ev)
      c:peer_certificate() -- read while the failure is already queued
      seen[ev.name] = true
    end)
    local err = H.error_of(H.memory_handshake, c, s)
    assert.equal("verify", err.code, tostring(err))
    assert.equal(62, err.verify_code) -- X509_V_ERR_HOSTNAME_MISMATCH
    assert.is_true(seen.alert_sent) -- the getter ran mid-failure
  end)

  it("hostname_mismatch_is_a_verify_error", function()
    local cctx, sctx = tlsrekey.pair_contexts()
    local err = H.raises("verify", function()
      core.pair { client_ctx = cctx, server_ctx = sctx, server_hostname = "example.org" }
    end)
    assert.is_true(err.verify_code > 0)
    assert.truthy(err.message:find("example.org", 1, true) or err.message:find("host", 1, true),
                  err.message)
  end)

  --- A memory handshake whose client trusts another certificate than the server's:
  -- the client, the server and the client's error.
  local function untrusted_memory_handshake()
    local _, sctx = tlsrekey.pair_contexts()
    local cctx = tlsrekey.context { mode = "client", cafile = (tlsrekey.make_test_cert()) }
    local c, s = cctx:memory { server_hostname = "localhost" }, sctx:memory()
    return c, s, H.error_of(H.memory_handshake, c, s)
  end

  it("fatal_error_is_remembered", function()
    local c, _, first = untrusted_memory_handshake()
    assert.equal("verify", first.code)
    assert.equal("failed", c:state())
    -- OpenSSL alone would answer the next call with SYSCALL/errno 0, or success
    local again = H.raises("verify", function() c:do_handshake() end)
    assert.equal(first.reason, again.reason)
    H.raises("verify", function() c:write("x") end)
  end)

  it("a_peer_alert_is_named_by_its_code", function()
    local c, s, first = untrusted_memory_handshake()
    assert.equal("verify", first.code)
    assert.is_nil(first.alert) -- our own verdict, no peer's alert
    s:feed(c:drain())
    local err = H.raises("protocol", function() s:do_handshake() end)
    assert.equal(48, err.alert) -- unknown_ca (RFC 8446 6.2), whatever the wording
    assert.truthy(err.reason:find("unknown ca", 1, true), err.reason)
  end)

  it("a_failed_call_leaves_nothing_for_the_next_one", function()
    local c1, s1 = tlsrekey.pair()
    H.raises("state", function() c1:renegotiate() end)
    local c2, s2 = tlsrekey.pair { max_version = "TLSv1.2", allow_client_renegotiation = true }
    c2:renegotiate()
    assert.equal("x", H.exchange(c2, s2, "x"))
    assert.equal("y", H.exchange(c1, s1, "y"))
  end)

  -- The peer vanishes without close_notify: a socket closed under it, or the end of
  -- stream fed into a memory transport (freeing one end of an in-memory pair is a
  -- different thing: "the other end of this pair was freed").
  local function vanish(T, opts)
    if T.sockets then
      local c, _, _, ssock = T.new(opts)
      ssock:close()
      return c
    end
    local c, s = T.raw_memory(opts)
    H.memory_handshake(c, s)
    c:feed_eof()
    return c
  end

  for _, T in ipairs(H.transports) do
    it("eof_without_close_notify_is_a_syscall_error over " .. T.name, function()
      local c = vanish(T)
      local err = H.raises("syscall", function() H.read_until(c, function() return false end) end)
      assert.truthy(err.message:lower():find("eof", 1, true), err.message)
    end)

    it("eof_without_close_notify_is_a_close_with_ignore_unexpected_eof over " .. T.name, function()
      local c = vanish(T, { ignore_unexpected_eof = true })
      local got
      local deadline = H.socket.gettime() + 5
      repeat
        local data, want = c:read()
        got = data or want
      until got == nil or H.socket.gettime() > deadline
      assert.is_nil(got) -- nil, no second value: a clean close
    end)

    it("freeing_one_end_of_a_pair_disconnects_the_other over " .. T.name, function()
      local c, s = T.new()
      s:close()
      if T.sockets then return end -- a socket stays open; covered by lifetimes
      H.raises("syscall", function() c:read() end)
      H.raises("syscall", function() c:read_into(tlsrekey.buffer(8)) end)
    end)

    it("close_notify_makes_read_return_nil over " .. T.name, function()
      local c, s = T.new()
      assert.is_false(s:shutdown())
      local data, want
      local deadline = H.socket.gettime() + 5
      repeat data, want = c:read() until want == nil or H.socket.gettime() > deadline
      assert.is_nil(data)
      assert.is_nil(want)
      assert.is_nil(c:read()) -- and again
      local r = table.pack(c:read_into(tlsrekey.buffer(8)))
      assert.same({ n = 1 }, r) -- read_into too: one nil, no want
      assert.is_true(c:shutdown())
      H.read_until(s, function() return s:shutdown() end)
    end)

    it("an_error_in_the_event_callback_is_raised_from_the_call over " .. T.name, function()
      local c, s = T.new()
      local boom = setmetatable({}, { __tostring = function() return "boom" end })
      s:on_event(function(ev)
        if ev.name == "key_update_received" then error(boom) end
      end)
      c:key_update("not_requested")
      c:write("x")
      local err = H.error_of(function() H.read_until(s, function() return false end) end)
      assert.equal(boom, err) -- the very value, not a copy
      -- the connection stays usable, the data of that read is kept for the next
      -- one, and the next calls do not raise the error again
      s:on_event(nil)
      local kept
      H.read_until(s, function() return kept ~= nil end, function(data) kept = data end)
      assert.equal("x", kept)
      assert.equal("y", H.exchange(c, s, "y"))
      assert.equal("z", H.exchange(s, c, "z"))
    end)
  end

  it("an_error_in_the_event_callback_is_raised_from_read_into", function()
    local c, s = tlsrekey.pair()
    s:on_event(function(ev)
      if ev.name == "key_update_received" then error("boom from the callback") end
    end)
    c:key_update("not_requested")
    c:write("x")
    local buf = tlsrekey.buffer(4)
    local err = H.error_of(s.read_into, s, buf)
    assert.truthy(tostring(err):find("boom from the callback", 1, true), tostring(err))
    s:on_event(nil)
    assert.equal(1, s:read_into(buf)) -- the data of that read, kept for the next
    assert.equal("x", buf:sub(1, 1))
  end)

  it("an_event_callback_must_not_drive_its_connection", function()
    local c, s = tlsrekey.pair()
    local inner
    c:on_event(function() inner = H.error_of(function() c:write("nested") end) end)
    c:key_update("not_requested", true)
    assert.equal("state", inner.code)
    assert.truthy(inner.message:find("callback", 1, true))
    assert.equal("x", H.exchange(c, s, "x"))
  end)

  it("would_block_raises_outside_read_and_write", function()
    local c, s = H.transports[2].raw()
    local err = H.raises("want_read", function() c:do_handshake() end)
    assert.equal("tlsrekey: want_read: " .. err.message, tostring(err))
    H.drive("do_handshake", c, s)
    assert.same({ nil, "want_read" }, { c:read() })
  end)
end)

describe("bad arguments", function()
  after_each(H.cleanup)

  it("module_functions_check_their_arguments", function()
    H.bad_argument(1, "context", tlsrekey.context)
    H.bad_argument(1, "context", tlsrekey.context, "client")
    H.bad_argument(1, "context", tlsrekey.context, {})
    H.bad_argument(1, "context", tlsrekey.context, { mode = "both" })
    H.bad_argument(1, "context", tlsrekey.context, { mode = 1 })
    H.bad_argument(1, "make_test_cert", function() tlsrekey.make_test_cert({}) end)
    H.bad_argument(1, "make_test_cert", function() tlsrekey.make_test_cert("") end)
    H.bad_argument(1, "pair", tlsrekey.pair, "x")
    H.bad_argument(1, "pair", tlsrekey.pair, { modee = "x" })
    local cctx, sctx = tlsrekey.pair_contexts()
    H.bad_argument(1, "pair", function() core.pair(cctx, sctx) end)
    local msg = H.bad_argument(1, "pair", function() core.pair { server_ctx = sctx } end)
    assert.truthy(msg:find("'client_ctx'", 1, true), msg)
    msg = H.bad_argument(1, "pair", function()
      core.pair { client_ctx = cctx, server_ctx = "x" }
    end)
    assert.truthy(msg:find("'server_ctx'", 1, true), msg)
    msg = H.bad_argument(1, "pair", function()
      core.pair { client_ctx = cctx, server_ctx = sctx, server_hostname = {} }
    end)
    assert.truthy(msg:find("'server_hostname'", 1, true), msg)
  end)

  it("context_methods_check_their_arguments", function()
    local cctx, sctx = tlsrekey.pair_contexts()
    H.bad_argument(1, "connect", function() cctx:connect({}, 1) end)
    H.bad_argument(2, "connect", function() cctx:connect("127.0.0.1", "x") end)
    H.bad_argument(2, "connect", function() cctx:connect("127.0.0.1", 0) end)
    H.bad_argument(2, "connect", function() cctx:connect("127.0.0.1", 70000) end)
    H.bad_argument(3, "connect", function() cctx:connect("127.0.0.1", 1, "x") end)
    H.bad_argument(3, "connect", function() cctx:connect("127.0.0.1", 1, { timeot = 1 }) end)
    H.bad_argument(3, "connect", function() cctx:connect("127.0.0.1", 1, { timeout = "1" }) end)
    H.bad_argument(1, "wrap", function() sctx:wrap("x") end)
    H.bad_argument(1, "wrap", function() sctx:wrap(nil) end)
    H.bad_argument(1, "wrap", function() sctx:wrap(-1) end)
    H.bad_argument(1, "wrap", function() sctx:wrap(1.5) end)
    H.bad_argument(2, "wrap", function() sctx:wrap(0, { server_hostname = 1 }) end)
    H.bad_argument(1, "memory", function() sctx:memory(1) end)
    H.bad_argument(1, "memory", function() sctx:memory { timeout = 1 } end)
    -- a client that checks host names needs one
    H.bad_argument(1, "memory", function() cctx:memory() end)
  end)

  it("connection_methods_check_their_arguments", function()
    local c = tlsrekey.pair()
    H.bad_argument(1, "read", function() c:read("x") end)
    H.bad_argument(1, "read", function() c:read(-1) end)
    H.bad_argument(1, "read", function() c:read(-5) end)
    H.bad_argument(1, "write", function() c:write() end)
    H.bad_argument(1, "write", function() c:write({}) end)
    H.bad_argument(1, "feed", function() c:feed() end)
    H.bad_argument(1, "key_update", function() c:key_update(0) end)
    H.bad_argument(2, "key_update", function() c:key_update("requested", 1) end)
    H.bad_argument(1, "set_verify_client", function() c:set_verify_client("yes") end)
    H.bad_argument(2, "set_verify_client", function() c:set_verify_client(true, 1) end)
    H.bad_argument(1, "export_keying_material", function() c:export_keying_material() end)
    H.bad_argument(2, "export_keying_material", function() c:export_keying_material("l") end)
    H.bad_argument(2, "export_keying_material", function() c:export_keying_material("l", 0) end)
    H.bad_argument(3, "export_keying_material", function() c:export_keying_material("l", 8, {}) end)
    H.bad_argument(1, "on_event", function() c:on_event("print") end)
    H.bad_argument(1, "settimeout", function() c:settimeout("never") end)
    -- self must be a connection
    for _, name in ipairs { "read", "write", "close", "key_update", "renegotiate", "stats",
                            "state", "version", "do_handshake", "shutdown" } do
      local ok, msg = pcall(c[name], "not a connection")
      assert.is_false(ok)
      assert.truthy(msg:find("tlsrekey.connection expected", 1, true), msg)
    end
  end)
end)

describe("the module", function()
  it("sets_no_globals_and_returns_a_table", function()
    local before = {}
    for k in pairs(_G) do before[k] = true end
    package.loaded["tlsrekey"], package.loaded["tlsrekey.core"] = nil, nil
    local t = require "tlsrekey"
    assert.equal("table", type(t))
    assert.equal("table", type(require "tlsrekey.core"))
    for k in pairs(_G) do assert.is_true(before[k], "new global: " .. tostring(k)) end
    assert.equal("none", t.KEY_UPDATE_NONE)
    assert.equal("not_requested", t.KEY_UPDATE_NOT_REQUESTED)
    assert.equal("requested", t.KEY_UPDATE_REQUESTED)
    assert.equal("string", type(t._VERSION))
    assert.truthy(t.OPENSSL_VERSION:find("OpenSSL", 1, true))
  end)

  it("userdata_have_names_for_the_debug_library", function()
    local c = tlsrekey.pair()
    assert.equal("tlsrekey.connection", getmetatable(c).__name)
    assert.equal("tlsrekey.context", getmetatable(c:context()).__name)
  end)
  it("a_write_to_a_closed_peer_never_raises_sigpipe", function()
    -- lua5.4 does not ignore SIGPIPE (LuaSocket does once loaded: the child below
    -- does not load it): a write(2) to a peer that closed would end the process by
    -- signal 13, which pcall cannot catch.
    local port = H.free_port()
    local cpath, kpath = H.cert_files()
    local server = H.spawn { "openssl", "s_server", "-accept", "127.0.0.1:" .. port,
                             "-cert", cpath, "-key", kpath, "-naccept", "1" }
    assert(server:wait_output("ACCEPT"), "s_server did not start:\n" .. server:output())
    local script = ([[
      local tlsrekey = require "tlsrekey"
      local ctx = tlsrekey.context { mode = "client", cafile = %q }
      local c = ctx:connect("127.0.0.1", %d, { server_hostname = "localhost", timeout = 5 })
      c:do_handshake()
      os.execute("kill %d; sleep 0.3")
      local ok, err
      for _ = 1, 100 do
        ok, err = pcall(c.write, c, ("x"):rep(65536))
        if not ok then break end
      end
      io.write(tostring(ok or err.code), " ", tostring(not ok and err.errno), "\n")
    ]]):format(cpath, port, server.pid)
    -- This process ignores SIGPIPE (LuaSocket), and children inherit that: give the
    -- child the default action back.
    local cmd = ("env --default-signal=PIPE %s -e %s 2>&1"):format(
      H.shell_quote(os.getenv("LUA") or "lua5.4"), H.shell_quote(script))
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    local ok, how, code = p:close()
    assert.is_true(ok, ("the child ended by %s %s: %s"):format(how, code, out))
    local name, errno = out:match("^(%S+) (%d+)")
    assert.equal("syscall", name, out)
    assert.is_true(errno == "32" or errno == "104", out) -- EPIPE, ECONNRESET
  end)
end)
