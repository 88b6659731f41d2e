-- TLS 1.2 renegotiation (SSL_key_update(3)): seed statements 6-11, over the
-- in-memory pair and over a TCP socket pair. Same case names as
-- tests/python/test_renegotiate.py.
local H = require "helpers"

local TLS12 = { max_version = "TLSv1.2" }
local TLS12_ALLOW = { max_version = "TLSv1.2", allow_client_renegotiation = true }

for _, T in ipairs(H.transports) do
  describe("renegotiation over " .. T.name, function()
    after_each(H.cleanup)

    it("renegotiate_on_tls13_is_a_state_error", function()
      local c, s = T.new()
      assert.equal("TLSv1.3", c:version())
      for _, conn in ipairs { c, s } do
        local err = H.raises("state", function() conn:renegotiate() end)
        assert.equal("wrong ssl version", err.reason)
        assert.truthy(err.message:find("TLSv1.3", 1, true), err.message)
        H.raises("state", function() conn:renegotiate_abbreviated() end)
        assert.is_false(conn:renegotiate_pending())
      end
      assert.equal("x", H.exchange(c, s, "x")) -- unharmed
    end)

    it("renegotiate_before_the_handshake_is_a_state_error", function()
      local c = T.raw(TLS12)
      H.raises("state", function() c:renegotiate() end)
      H.raises("state", function() c:renegotiate_abbreviated() end)
    end)

    it("client_renegotiate_is_a_full_handshake_without_resumption", function()
      local c, s = T.new(TLS12_ALLOW)
      assert.is_true(c:renegotiate())
      assert.is_true(c:renegotiate_pending())
      assert.equal("x", H.exchange(c, s, "x"))
      assert.equal("y", H.exchange(s, c, "y"))
      assert.is_false(c:session_reused())
      assert.is_false(s:session_reused())
      assert.equal(1, c:stats().renegotiations)
      assert.equal(1, s:stats().renegotiations)
      assert.equal(2, c:stats().handshakes)
      assert.is_false(c:renegotiate_pending())
      assert.equal("established", c:state())
    end)

    it("client_renegotiate_abbreviated_resumes_the_session", function()
      local c, s = T.new(TLS12_ALLOW)
      assert.is_true(c:renegotiate_abbreviated())
      assert.is_true(c:renegotiate_pending())
      assert.equal("x", H.exchange(c, s, "x"))
      assert.equal("y", H.exchange(s, c, "y"))
      assert.is_true(c:session_reused())
      assert.is_true(s:session_reused())
      assert.equal(1, c:stats().renegotiations)
      assert.equal(1, s:stats().renegotiations)
    end)

    for _, method in ipairs { "renegotiate", "renegotiate_abbreviated" } do
      it("server_" .. method .. "_is_transparent_to_the_client", function()
        local c, s = T.new(TLS12)
        local events = {}
        c:on_event(function(ev) events[#events + 1] = ev.name end)
        assert.is_true(s[method](s))
        assert.is_true(s:renegotiate_pending())
        -- the client handles the request inside ordinary reads and writes
        assert.equal("x", H.exchange(s, c, "x"))
        assert.equal("y", H.exchange(c, s, "y"))
        assert.equal("z", H.exchange(s, c, "z"))
        assert.equal(1, s:stats().hello_requests_sent)
        assert.equal(1, c:stats().hello_requests_received)
        assert.equal(1, s:stats().renegotiations)
        assert.equal(1, c:stats().renegotiations)
        assert.is_true(c:session_reused()) -- a TLS client resumes
        assert.is_false(s:renegotiate_pending())
        assert.truthy(table.concat(events, " "):find("hello_request_received", 1, true))
        assert.truthy(table.concat(events, " "):find("renegotiation_done", 1, true))
      end)
    end

    it("client_renegotiation_is_refused_by_default", function()
      local c, s = T.new(TLS12)
      c:renegotiate()
      local err = H.error_of(function()
        H.exchange(c, s, "x")
        H.exchange(s, c, "y")
      end)
      -- a clear error, not a hang
      assert.truthy(H.tlsrekey.is_error(err), tostring(err))
      assert.equal("protocol", err.code)
      assert.equal(0, s:stats().renegotiations)
    end)

    it("client_renegotiation_is_accepted_with_allow_client_renegotiation", function()
      local c, s = T.new(TLS12_ALLOW)
      c:renegotiate()
      assert.equal("x", H.exchange(c, s, "x"))
      assert.equal(1, s:stats().renegotiations)
    end)

    it("renegotiate_pending_is_true_after_scheduling_and_false_once_acted_on", function()
      local c, s = T.new(TLS12_ALLOW)
      assert.is_false(c:renegotiate_pending())
      c:renegotiate()
      assert.is_true(c:renegotiate_pending())
      assert.truthy(tostring(c):find("renegotiate_pending", 1, true))
      H.exchange(c, s, "x")
      H.exchange(s, c, "y")
      assert.is_false(c:renegotiate_pending())
      assert.is_false(s:renegotiate_pending())
    end)

    it("renegotiate_with_no_renegotiation_fails_at_once", function()
      local c, s = T.new { max_version = "TLSv1.2", no_renegotiation = true }
      H.raises("state", function() c:renegotiate() end)
      H.raises("state", function() s:renegotiate() end)
      assert.is_false(c:renegotiate_pending())
      assert.equal("x", H.exchange(c, s, "x"))
    end)

    it("renegotiate_twice_while_pending_is_fine", function()
      local c, s = T.new(TLS12_ALLOW)
      c:renegotiate_abbreviated()
      c:renegotiate() -- makes it a full one
      H.exchange(c, s, "x")
      H.exchange(s, c, "y")
      assert.is_false(c:session_reused())
      assert.equal(1, c:stats().renegotiations)
    end)
  end)
end

describe("renegotiation errors", function()
  after_each(H.cleanup)

  it("a_client_refusing_the_hello_request_is_what_the_server_error_says", function()
    -- only the client forbids renegotiation: the server's error names the
    -- client's refusal, not a server setting that would not help
    local tlsrekey = require "tlsrekey"
    local cert, key = tlsrekey.make_test_cert("localhost")
    local cctx = tlsrekey.pair_contexts { cert = cert, key = key, max_version = "TLSv1.2",
                                          no_renegotiation = true }
    local _, sctx = tlsrekey.pair_contexts { cert = cert, key = key, max_version = "TLSv1.2" }
    local c, s = tlsrekey.pair { client_ctx = cctx, server_ctx = sctx }
    s:renegotiate()
    assert.equal(5, s:write("hello"))
    assert.equal("hello", c:read())
    local err = H.raises("protocol", function() s:read() end)
    assert.is_nil(err.message:find("allow_client_renegotiation", 1, true))
    assert.truthy(err.message:find("client refused", 1, true), err.message)
  end)
end)
