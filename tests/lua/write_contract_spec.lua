-- write() does what it says or says exactly what it did (issue 15, items 1, 2, 6;
-- mirrors tests/python/test_write_contract.py).
local tlsrekey = require "tlsrekey"
local H = require "helpers"

-- Everything that has arrived at conn (a timeout-0 socket end), without waiting.
local function drain(conn, into)
  while true do
    local data = conn:read(65536)
    if not data then return end
    into[#into + 1] = data
  end
end

local function socket_ends(opts)
  local t = H.transports[2]
  assert(t.sockets)
  local c, s = t.new(opts)
  return c, s
end

describe("write", function()
  after_each(function() H.cleanup(); collectgarbage(); collectgarbage() end)

  for _, policy in ipairs { false, 3000 } do
    for _, timeout in ipairs { 0, 0.05 } do
      it(("sends everything or says want/timeout; the same call finishes it " ..
          "(policy %s, timeout %s)"):format(tostring(policy), timeout), function()
        local c, s = socket_ends { max_version = "TLSv1.3" }
        if policy then c:set_rekey_policy { bytes = policy } end
        c:settimeout(timeout)
        local sent, got, wants = {}, {}, 0
        local i = 0
        while wants < 3 and i < 5000 do
          i = i + 1
          local data = string.rep(string.char(65 + i % 26), 9000)
          while true do
            local ok, n, want = pcall(c.write, c, data)
            if ok and n then
              assert.equal(#data, n)   -- a short count: the caller would drop the tail
              sent[#sent + 1] = data
              break
            end
            if ok then
              assert.truthy(want == "want_write" or want == "want_read")
            else
              assert.equal("timeout", n.code)
            end
            wants = wants + 1
            drain(s, got)
          end
        end
        assert.is_true(wants >= 3, "the socket never filled: the test proved nothing")
        c:settimeout(nil)
        local want_len = #table.concat(sent)
        while #table.concat(got) < want_len do
          drain(s, got)
        end
        assert.is_true(table.concat(got) == table.concat(sent))
      end)
    end
  end

  for _, other in ipairs { "", "other data", "short" } do
    it("refuses another write while one is pending, harmlessly (" .. other .. ")", function()
      local c, s = socket_ends { max_version = "TLSv1.3" }
      c:settimeout(0)
      local data = string.rep("p", 50000)
      local sent, got = {}, {}
      while true do
        local n = c:write(data)
        if not n then break end
        sent[#sent + 1] = data
      end
      if other == "short" then other = data:sub(1, 1000) end
      local ok, err = pcall(c.write, c, other)
      assert.is_false(ok)
      assert.equal("state", err.code)
      assert.truthy(err.message:find("pending", 1, true))
      assert.truthy(err.message:find(tostring(#data) .. " bytes", 1, true))
      -- the connection is whole: the pending write finishes, every byte arrives once
      while true do
        drain(s, got)
        if c:write(data) then break end
      end
      sent[#sent + 1] = data
      assert.equal(3, c:write("end"))
      sent[#sent + 1] = "end"
      local want_len = #table.concat(sent)
      while #table.concat(got) < want_len do drain(s, got) end
      assert.is_true(table.concat(got) == table.concat(sent))
    end)
  end

  for _, how in ipairs { "error", "yield" } do
    for _, policy in ipairs { false, 4000 } do
      it(("says how much went out when a callback fails (%s, policy %s)"):format(
          how, tostring(policy)), function()
        local c, s = tlsrekey.pair { max_version = "TLSv1.3" }
        local parts = {}
        for i = 1, 1000 do parts[i] = ("PAY-%04d;"):format(i) end
        local data = table.concat(parts)        -- 9000 bytes
        c:on_event(function(ev)
          if ev.name == "key_update_sent" then
            if how == "yield" then coroutine.yield() else error("boom") end
          end
        end)
        if policy then
          c:set_rekey_policy { bytes = policy }
        else
          c:key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED, false)
        end
        local ok, err = coroutine.wrap(function() return pcall(c.write, c, data) end)()
        assert.is_false(ok)
        assert.equal("callback", err.code)
        assert.is_number(err.written)
        assert.is_true(err.written > 0 and err.written <= #data)
        if how == "error" then assert.truthy(tostring(err.cause):find("boom", 1, true)) end
        c:on_event(nil)
        assert.equal(#data - err.written, c:write(data:sub(err.written + 1)))
        local got = {}
        while #table.concat(got) < #data do got[#got + 1] = s:read(65536) end
        assert.equal(data, table.concat(got))
      end)
    end
  end

  it("does not report again a callback failure of a call that failed on its own", function()
    local c, s = socket_ends { max_version = "TLSv1.2", allow_client_renegotiation = true }
    c:settimeout(5)
    s:settimeout(5)
    c:on_event(function(ev)
      if ev.name == "handshake_start" then error("boom") end
    end)
    assert.is_true(c:renegotiate())          -- scheduled: the next I/O performs it
    assert.equal(16, s:write("before the close"))
    pcall(s.shutdown, s)
    assert.is_false(pcall(c.write, c, "x"))
    c:on_event(nil)
    local got = {}
    while true do
      local data, err = c:read(65536)
      if not data then
        assert.is_nil(err)                   -- nil alone: the peer closed cleanly
        break
      end
      got[#got + 1] = data
    end
    assert.equal("before the close", table.concat(got))
  end)
end)
