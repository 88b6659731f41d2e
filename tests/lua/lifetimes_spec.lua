-- Lifetimes: a connection keeps its context and wrapped socket alive (user values),
-- a pair's ends keep each other alive, close/__close/__gc are one idempotent
-- function, calls after close raise "state", and collecting in any order never
-- crashes. Same case names as tests/python/test_lifetimes.py.
local H = require "helpers"
local tlsrekey = H.tlsrekey
local core = require "tlsrekey.core"

local function weak() return setmetatable({}, { __mode = "v" }) end
local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe("lifetimes", function()
  after_each(H.cleanup)

  it("connection_keeps_its_context_alive", function()
    local w = weak()
    local c, s
    do
      local cctx, sctx, hostname = tlsrekey.pair_contexts()
      w.cctx, w.sctx = cctx, sctx
      c, s = core.pair { client_ctx = cctx, server_ctx = sctx, server_hostname = hostname }
    end
    H.cleanup()
    assert.equal(2, count(w))
    assert.equal(w.cctx, c:context())
    assert.equal("x", H.exchange(c, s, "x"))
    c:close()
    s:close()
    H.cleanup()
    assert.equal(0, count(w)) -- close released them
  end)

  it("pair_ends_keep_each_other_alive", function()
    local w = weak()
    local c
    do
      local s
      c, s = tlsrekey.pair()
      w.s = s
    end
    H.cleanup()
    assert.is_not_nil(w.s)
    assert.equal("x", H.exchange(c, w.s, "x"))
    c = nil -- luacheck: ignore
    H.cleanup()
    assert.equal(0, count(w))
  end)

  it("wrapped_socket_is_kept_alive_and_never_closed", function()
    local w = weak()
    local c, s
    do
      local cctx, sctx, hostname = tlsrekey.pair_contexts()
      local csock, ssock = H.tcp_pair()
      w.csock = csock
      c = cctx:wrap(csock, { server_hostname = hostname, timeout = 0 })
      s = sctx:wrap(ssock, { timeout = 0 })
    end
    H.drive("do_handshake", c, s)
    collectgarbage()
    collectgarbage()
    assert.is_not_nil(w.csock)
    assert.equal("x", H.exchange(c, s, "x"))
    c:close()
    assert.is_true(w.csock:getfd() >= 0) -- close() did not close it
  end)

  it("close_is_idempotent_and_later_calls_are_state_errors", function()
    local c, s = tlsrekey.pair()
    c:close()
    c:close()
    assert.equal("released", c:state())
    assert.equal("tlsrekey.connection client released", tostring(c))
    for _, call in ipairs {
      function() c:read() end, function() c:write("x") end, function() c:do_handshake() end,
      function() c:read_into(tlsrekey.buffer(4)) end,
      function() c:write(tlsrekey.buffer(4)) end,
      function() c:key_update() end, function() c:get_key_update_type() end,
      function() c:renegotiate() end, function() c:renegotiate_pending() end,
      function() c:shutdown() end, function() c:pending() end, function() c:stats() end,
      function() c:version() end, function() c:cipher() end, function() c:on_event(print) end,
      function() c:peer_certificate() end, function() c:export_keying_material("l", 8) end,
      function() c:feed("x") end, function() c:drain() end, function() c:getfd() end,
      function() c:settimeout(1) end, function() c:context() end, function() c:role() end,
    } do
      local err = H.raises("state", call)
      assert.truthy(err.message:find("closed", 1, true), err.message)
    end
    -- the other end of the pair is disconnected, not crashed
    H.raises("syscall", function() s:write("x") end)
  end)

  it("close_attribute_closes_at_the_end_of_the_block", function()
    local outside
    do
      local c0, s0 = tlsrekey.pair()
      local c <close> = c0
      local s <close> = s0
      outside = c
      assert.equal("x", H.exchange(c, s, "x"))
    end
    assert.equal("released", outside:state())
  end)

  it("a_connection_cannot_close_itself_from_its_event_callback", function()
    local c, s = tlsrekey.pair()
    local err
    c:on_event(function() err = H.error_of(function() c:close() end) end)
    c:key_update("not_requested", true)
    assert.equal("state", err.code)
    assert.equal("x", H.exchange(c, s, "x"))
  end)

  it("an_event_function_closing_over_its_connection_is_collected", function()
    local w = weak()
    do
      local c, s = tlsrekey.pair()
      c:on_event(function() return c, s end)
      s:on_event(function() return s, c end)
      w.c, w.s = c, s
    end
    H.cleanup()
    assert.equal(0, count(w))
  end)

  it("collecting_in_any_order_never_crashes", function()
    local orders = {
      { "cctx", "sctx", "c", "s" }, { "c", "s", "cctx", "sctx" }, { "s", "cctx", "c", "sctx" },
      { "sctx", "c", "cctx", "s" },
    }
    for round = 1, 3 do
      for _, order in ipairs(orders) do
        local objs = {}
        objs.cctx, objs.sctx, objs.hostname = tlsrekey.pair_contexts()
        objs.c, objs.s = core.pair { client_ctx = objs.cctx, server_ctx = objs.sctx,
                                           server_hostname = objs.hostname }
        if round == 2 then objs.c:key_update("requested") end
        if round == 3 then objs.s:close() end
        for _, name in ipairs(order) do
          objs[name] = nil
          collectgarbage("step", 1)
        end
        collectgarbage()
      end
    end
    -- memory transports and sockets too, dropped before and after their context
    for _ = 1, 10 do
      local cctx, sctx, hostname = tlsrekey.pair_contexts()
      local m = cctx:memory { server_hostname = hostname }
      local csock, ssock = H.tcp_pair()
      local w1 = cctx:wrap(csock, { server_hostname = hostname, timeout = 0 })
      local w2 = sctx:wrap(ssock, { timeout = 0 })
      cctx, sctx = nil, nil -- luacheck: ignore
      collectgarbage()
      assert.equal("new", m:state())
      m, w1, w2 = nil, nil, nil -- luacheck: ignore
      collectgarbage()
    end
  end)

  it("many_pairs_do_not_grow_the_lua_heap", function()
    local function churn()
      for _ = 1, 50 do
        local c, s = tlsrekey.pair()
        c:key_update("requested")
        H.exchange(c, s, "x")
        H.exchange(s, c, "y")
      end
      collectgarbage()
      collectgarbage()
    end
    churn()
    local before = collectgarbage("count")
    churn()
    assert.is_true(collectgarbage("count") < before * 1.5 + 64)
  end)
end)
