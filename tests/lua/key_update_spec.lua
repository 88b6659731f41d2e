-- TLS 1.3 key update (SSL_key_update(3)): seed statements 1-5 and the pitfalls, over
-- the in-memory pair and over a TCP socket pair. Same case names as
-- tests/python/test_key_update.py.
local H = require "helpers"
local tlsrekey = H.tlsrekey

for _, T in ipairs(H.transports) do
  describe("key update over " .. T.name, function()
    after_each(H.cleanup)

    it("key_update_not_requested updates our keys and not the peer's", function()
      local c, s = T.new()
      assert.is_true(c:key_update("not_requested"))
      assert.equal("hi", H.exchange(c, s, "hi"))
      assert.equal("ok", H.exchange(s, c, "ok"))
      local cs, ss = c:stats(), s:stats()
      assert.equal(1, cs.key_updates_sent)
      assert.equal(0, cs.key_update_requests_sent)
      assert.equal(1, ss.key_updates_received)
      assert.equal(0, ss.key_update_requests_received)
      assert.equal(0, ss.key_updates_sent) -- the peer did not update its own
      assert.equal(0, cs.key_updates_received)
      assert.equal("none", s:get_key_update_type())
      for i = 1, 3 do -- data keeps flowing both ways
        assert.equal("c" .. i, H.exchange(c, s, "c" .. i))
        assert.equal("s" .. i, H.exchange(s, c, "s" .. i))
      end
    end)

    it("key_update_constant_is_accepted", function()
      local c, s = T.new()
      c:key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)
      assert.equal("x", H.exchange(c, s, "x"))
      c:key_update(tlsrekey.KEY_UPDATE_REQUESTED)
      assert.equal("y", H.exchange(c, s, "y"))
      assert.equal(2, c:stats().key_updates_sent)
    end)

    it("key_update_default_type_is_not_requested", function()
      local c = T.new()
      c:key_update()
      assert.equal("not_requested", c:get_key_update_type())
    end)

    it("key_update_requested_makes_the_peer_update_on_its_next_write", function()
      local c, s = T.new()
      c:key_update("requested")
      assert.equal("requested", c:get_key_update_type())
      assert.equal("hi", H.exchange(c, s, "hi"))
      assert.equal(1, s:stats().key_update_requests_received)
      assert.equal(0, c:stats().key_updates_received)
      assert.equal("ok", H.exchange(s, c, "ok"))
      local cs, ss = c:stats(), s:stats()
      assert.equal(1, cs.key_updates_sent)
      assert.equal(1, cs.key_update_requests_sent)
      assert.equal(1, ss.key_updates_sent) -- the answer
      assert.equal(0, ss.key_update_requests_sent)
      assert.equal(1, cs.key_updates_received)
      assert.equal("none", c:get_key_update_type())
      assert.equal("none", s:get_key_update_type())
      assert.equal("more", H.exchange(c, s, "more"))
      assert.equal("data", H.exchange(s, c, "data"))
    end)

    it("key_update_none_is_rejected", function()
      local c = T.new()
      H.bad_argument(1, "key_update", function() c:key_update("none") end)
      H.bad_argument(1, "key_update", function() c:key_update(tlsrekey.KEY_UPDATE_NONE) end)
      H.bad_argument(1, "key_update", function() c:key_update("sometimes") end)
      H.bad_argument(1, "key_update", function() c:key_update(1) end)
      H.bad_argument(1, "key_update", function() c:key_update(true) end)
      H.bad_argument(1, "key_update", function() c:key_update({}) end)
      H.bad_argument(2, "key_update", function() c:key_update("requested", "now") end)
      assert.equal("none", c:get_key_update_type()) -- nothing was scheduled
    end)

    it("key_update_before_the_handshake_is_a_state_error", function()
      local c, s = T.raw()
      local err = H.raises("state", function() c:key_update("requested") end)
      assert.truthy(err.message:find("handshake", 1, true), err.message)
      H.raises("state", function() s:key_update() end)
    end)

    it("key_update_on_tls12_is_a_state_error_naming_the_version", function()
      local c, s = T.new { max_version = "TLSv1.2" }
      assert.equal("TLSv1.2", c:version())
      local err = H.raises("state", function() c:key_update("requested") end)
      assert.equal("wrong ssl version", err.reason)
      assert.truthy(err.message:find("TLSv1.2", 1, true), err.message)
      H.raises("state", function() s:key_update("not_requested") end)
      assert.equal("x", H.exchange(c, s, "x")) -- the connection is unharmed
    end)

    it("key_update_waits_for_the_next_io", function()
      local c, s = T.new()
      c:key_update("not_requested")
      assert.equal("not_requested", c:get_key_update_type())
      assert.equal(0, c:stats().key_updates_sent)
      assert.equal(0, s:stats().key_updates_received)
      assert.equal("x", H.exchange(c, s, "x"))
      assert.equal("none", c:get_key_update_type())
      assert.equal(1, c:stats().key_updates_sent)
      assert.equal(1, s:stats().key_updates_received)
    end)

    it("key_update_do_handshake_forces_it_at_once", function()
      local c, s = T.new()
      c:key_update("requested")
      c:do_handshake()
      assert.equal("none", c:get_key_update_type())
      assert.equal(1, c:stats().key_updates_sent)
      -- no data, but the KeyUpdate is read
      assert.equal("", H.read_until(s, function() return s:stats().key_updates_received == 1 end))
    end)

    it("key_update_now_puts_it_on_the_wire_when_the_call_returns", function()
      local c, s = T.new()
      c:key_update("not_requested", true)
      assert.equal("none", c:get_key_update_type())
      assert.equal(1, c:stats().key_updates_sent)
      assert.equal("", H.read_until(s, function() return s:stats().key_updates_received == 1 end))
    end)

    it("key_update_twice_is_a_state_error_naming_the_scheduled_type", function()
      local c, s = T.new()
      c:key_update("requested")
      local err = H.raises("state", function() c:key_update("not_requested") end)
      assert.truthy(err.message:find("requested", 1, true), err.message)
      assert.equal("requested", c:get_key_update_type()) -- the first one stands
      assert.equal("x", H.exchange(c, s, "x"))            -- and the connection works
      assert.equal(1, c:stats().key_updates_sent)
      c:key_update("not_requested") -- and once sent, another can be scheduled
      assert.equal("y", H.exchange(c, s, "y"))
      assert.equal(2, c:stats().key_updates_sent)
    end)

    it("key_update_owed_reply_is_visible_until_a_write_sends_it", function()
      local c, s = T.new()
      c:key_update("requested", true)
      H.read_until(s, function() return s:stats().key_updates_received == 1 end)
      -- the peer owes an answer it never asked for
      assert.equal("not_requested", s:get_key_update_type())
      s:do_handshake() -- does not send it
      assert.equal("not_requested", s:get_key_update_type())
      assert.equal(0, s:stats().key_updates_sent)
      assert.equal(0, s:write("")) -- a zero-length write does
      assert.equal("none", s:get_key_update_type())
      assert.equal(1, s:stats().key_updates_sent)
      H.read_until(c, function() return c:stats().key_updates_received == 1 end)
    end)

    it("key_update_events_are_reported", function()
      local c, s = T.new()
      local seen = {}
      c:on_event(function(ev) seen[#seen + 1] = "c:" .. ev.name .. ":" .. tostring(ev.request_update) end)
      s:on_event(function(ev) seen[#seen + 1] = "s:" .. ev.name .. ":" .. tostring(ev.request_update) end)
      c:key_update("requested")
      H.exchange(c, s, "hi")
      H.exchange(s, c, "ok")
      assert.same({ "c:key_update_sent:true", "s:key_update_received:true",
                    "s:key_update_sent:false", "c:key_update_received:false" }, seen)
    end)

    if T.sockets then
      it("key_update_after_a_blocked_write_is_a_state_error_until_the_write_completes", function()
        local c, s = T.new()
        local chunk = ("x"):rep(65536)
        local blocked
        for _ = 1, 1000 do -- fill the socket buffers: nobody reads
          local n, want = c:write(chunk)
          if not n then blocked = want break end
        end
        assert.equal("want_write", blocked)
        local err = H.raises("state", function() c:key_update("not_requested") end)
        assert.truthy(err.message:find("write", 1, true), err.message)
        -- the connection is unharmed: read everything, finish the write, retry
        local total = 0
        local deadline = H.socket.gettime() + 10
        local written = false
        while not written do
          local got = H.read_available(s)
          total = total + #got
          written = c:write(chunk) ~= nil
          assert(H.socket.gettime() < deadline)
        end
        assert.is_true(c:key_update("not_requested"))
        assert.equal(1, c:write("z"))
        local tail = ""
        H.read_until(s, function()
          tail = (tail .. H.read_available(s)):sub(-1)
          return tail == "z"
        end)
        assert.equal(1, s:stats().key_updates_received)
      end)
    end
  end)
end
