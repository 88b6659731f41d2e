-- Long haul and edge semantics (issue 4), the Lua side of
-- tests/python/test_long_haul.py: thousands of key updates with every byte checked,
-- a peer flooding update requests, a key update or renegotiation while a write is
-- pending, a vanishing peer, truncated records, EOF without close_notify, a timeout
-- inside a renegotiation. Same case names as the Python file.
local H = require "helpers"
local tlsrekey = H.tlsrekey
local socket = H.socket

local UPDATES = tonumber(os.getenv("TLSREKEY_LONG_HAUL_UPDATES") or "10000")

local function statm_rss()
  local f = assert(io.open("/proc/self/statm"))
  local pages = tonumber(f:read("a"):match("^%d+%s+(%d+)"))
  f:close()
  return pages * 4096
end

--- Data that differs at every step and carries its index.
local function chunk(i)
  local parts = { ("%08d:"):format(i) }
  for k = 1, 1 + i % 5 do parts[#parts + 1] = ("%016x"):format((i * 2654435761 + k) % 2^52) end
  return table.concat(parts)
end

--- A handshaken memory-transport client and server, nothing left in flight.
local function memory_pair(opts)
  local cctx, sctx, hostname = tlsrekey.pair_contexts(opts)
  local c, s = cctx:memory { server_hostname = hostname }, sctx:memory()
  H.memory_handshake(c, s)
  for _ = 1, 3 do
    c:read(); H.shuttle(c, s)
    s:read(); H.shuttle(c, s)
  end
  return c, s
end

describe("long haul", function()
  after_each(H.cleanup)

  -- A write on a pair once gave up after 10,000 rounds of its 64 KiB buffer, about
  -- 654.5 MB ("want_write", which a pair never asks for): just past it, in one write.
  it("one_write_on_a_pair_delivers_any_size", function()
    local size = 655000000
    local c, s = tlsrekey.pair()
    assert.equal(4, c:write("beg!"))
    do
      local big = tlsrekey.buffer(size) -- zeros
      assert.equal(size, c:write(big))
    end
    collectgarbage()
    assert.equal(4, c:write("end!"))
    local zeros = string.rep("\0", 1 << 20)
    local total, nonzero, first, last = 0, 0, nil, ""
    while total < size + 8 do
      local data = assert(s:read(1 << 20))
      first = first or data:sub(1, 4)
      last = (last .. data:sub(-4)):sub(-4)
      local at = 1
      while data ~= zeros do -- the few reads that are not all zeros
        at = data:find("[^\0]", at)
        if not at then break end
        nonzero, at = nonzero + 1, at + 1
      end
      total = total + #data
    end
    assert.equal(size + 8, total) -- nothing lost or doubled
    assert.equal(0, s:pending())
    assert.same({ "beg!", "end!", 8 }, { first, last, nonzero })
  end)

  it("ten_thousand_key_updates_interleaved_with_data_both_ways", function()
    local c, s = tlsrekey.pair()
    local sent = { [c] = 0, [s] = 0 }
    local requested = { [c] = 0, [s] = 0 }
    for i = 1, UPDATES do
      local sender, receiver = c, s
      if i % 2 == 0 then sender, receiver = s, c end
      local kind = i % 3 == 0 and "requested" or "not_requested"
      sender:key_update(kind)
      sent[sender] = sent[sender] + 1
      local data = chunk(i)
      assert.equal(#data, sender:write(data))
      assert.equal(data, receiver:read(#data))
      local reply = chunk(-i)
      assert.equal(#reply, receiver:write(reply)) -- carries any answer owed
      assert.equal(reply, sender:read(#reply))
      if kind == "requested" then
        requested[sender] = requested[sender] + 1
        sent[receiver] = sent[receiver] + 1
      end
    end
    local cs, ss = c:stats(), s:stats()
    assert.equal(sent[c], cs.key_updates_sent)
    assert.equal(sent[c], ss.key_updates_received)
    assert.equal(sent[s], ss.key_updates_sent)
    assert.equal(sent[s], cs.key_updates_received)
    assert.equal(requested[c], cs.key_update_requests_sent)
    assert.equal(requested[c], ss.key_update_requests_received)
    assert.equal(requested[s], ss.key_update_requests_sent)
    assert.equal(requested[s], cs.key_update_requests_received)
    assert.is_true(cs.key_updates_sent + ss.key_updates_sent >= UPDATES)
    assert.equal("none", c:get_key_update_type())
    assert.equal("none", s:get_key_update_type())
  end)

  it("a_thousand_back_to_back_key_updates_without_data", function()
    local c, s = tlsrekey.pair()
    for _ = 1, 1000 do c:key_update("not_requested", true) end
    assert.equal(1000, c:stats().key_updates_sent)
    c:write("after a thousand")
    assert.equal("after a thousand", s:read())
    assert.equal(1000, s:stats().key_updates_received)
    s:write("and back")
    assert.equal("and back", c:read())
  end)

  it("a_thousand_back_to_back_requests_leave_both_ends_consistent", function()
    local c, s = tlsrekey.pair()
    for _ = 1, 1000 do c:key_update("requested", true) end
    c:write("x")
    assert.equal("x", s:read())
    s:write("y")
    assert.equal("y", c:read())
    assert.equal(1000, s:stats().key_update_requests_received)
    assert.equal(s:stats().key_updates_sent, c:stats().key_updates_received)
    assert.is_true(c:stats().key_updates_received >= 1)
    assert.equal("none", s:get_key_update_type())
  end)

  -- The two bug cases below run the scenario: while the bug is there they report it
  -- as pending; once it is fixed they check the right behaviour like any test.
  it("a_thousand_back_to_back_requests_are_answered_once", function()
    local c, s = tlsrekey.pair()
    for _ = 1, 1000 do c:key_update("requested", true) end
    c:write("x")
    assert.equal("x", s:read())
    s:write("y")
    assert.equal("y", c:read())
    if s:stats().key_updates_sent == 1000 then
      pending("BUG (core over OpenSSL 3.0): every update_requested read while silent "
              .. "gets its own KeyUpdate (N-1 sent from inside the read, one at the next "
              .. "write); RFC 8446 4.6.3 and issue 4 expect a single answer. See "
              .. "tests/python/test_long_haul.py FLOOD_REPLIES_BUG.")
      return
    end
    assert.equal(1, s:stats().key_updates_sent)
    assert.equal(1, c:stats().key_updates_received)
  end)

  it("flood_of_key_update_requests_keeps_memory_bounded", function()
    local c, s = memory_pair()
    local before
    for round = 1, 40 do
      for _ = 1, 500 do c:key_update("requested", true) end
      s:feed(c:drain())
      local data, want = s:read()
      assert.is_nil(data)
      assert.equal("want_read", want)
      c:feed(s:drain())
      assert.is_nil((c:read()))
      if round == 5 then
        collectgarbage(); collectgarbage()
        before = statm_rss()
      end
    end
    collectgarbage(); collectgarbage()
    local after = statm_rss()
    assert.is_true(after - before < 8 * 1024 * 1024, ("RSS %d -> %d"):format(before, after))
    assert.equal(20000, s:stats().key_update_requests_received)
    assert.equal(0, s:write(""))           -- the last answer owed
    c:feed(s:drain())
    c:read()
    assert.equal(s:stats().key_updates_sent, c:stats().key_updates_received)
    assert.equal(20000, s:stats().key_updates_received)
    s:write("still fine")
    c:feed(s:drain())
    assert.equal("still fine", c:read())
  end)

  -- -- a write pending on a non-blocking socket -----------------------------------

  --- Starts a write on `w` that cannot finish (its peer does not read); returns it.
  local function pending_write(w)
    local big = string.rep("0123456789abcdef", 2 * 1024 * 1024) -- 32 MiB
    local n, want = w:write(big)
    assert.is_nil(n)
    assert.equal("want_write", want)
    return big
  end

  local function finish(w, r, data, got)
    local limit = socket.gettime() + 20
    while true do
      local n = w:write(data)
      repeat
        local s = r:read()
        if s then got[#got + 1] = s end
      until not s
      if n then return n end
      assert(socket.gettime() < limit, "the pending write never finished")
    end
  end

  local function drain_until(r, got, total)
    local limit = socket.gettime() + 10
    local have = 0
    for _, s in ipairs(got) do have = have + #s end
    while have < total do
      local s = r:read()
      if s then got[#got + 1] = s; have = have + #s else socket.sleep(0.001) end
      assert(socket.gettime() < limit, "the data did not arrive")
    end
    return table.concat(got)
  end

  it("key_update_while_a_write_is_pending_is_state_error_then_works", function()
    local c, s = H.transports[2].new()
    local big = pending_write(c)
    local err = H.raises("state", function() c:key_update("requested") end)
    assert.equal("bad write retry", err.reason)
    assert.equal("none", c:get_key_update_type())
    local got = {}
    assert.equal(#big, finish(c, s, big, got))
    c:key_update("requested")
    assert.equal(4, finish(c, s, "tail", got))
    assert.equal(big .. "tail", drain_until(s, got, #big + 4))
    assert.equal(1, s:stats().key_updates_received)
  end)

  it("renegotiate_while_a_write_is_pending_is_refused_or_deferred", function()
    local c, s = H.transports[2].new { max_version = "TLSv1.2",
                                       allow_client_renegotiation = true }
    local big = pending_write(c)
    local ok, err = pcall(c.renegotiate, c)
    if not ok then
      assert.equal("state", err.code)
      assert.equal("bad write retry", err.reason)
    end
    local got = {}
    assert.equal(#big, finish(c, s, big, got))
    assert.equal(big, drain_until(s, got, #big)) -- never a corrupted stream
    if not ok then c:renegotiate() end
    assert.equal("tail", H.exchange(c, s, "tail"))
    assert.equal("back", H.exchange(s, c, "back"))
    assert.equal(1, c:stats().renegotiations)
  end)

  -- -- a vanishing peer, truncation, EOF -------------------------------------------

  it("peer_vanishes_in_the_middle_of_a_key_update", function()
    local c, s, _, ssock = H.transports[2].new()
    c:key_update("requested")
    assert.equal(4, c:write("ping"))
    s:close()
    ssock:close()
    c:settimeout(5)
    local err = H.raises("syscall", function() c:read() end)
    assert.is_true(err.reason == "unexpected eof while reading"
                   or err.reason == "Connection reset by peer", err.reason)
    assert.equal("failed", c:state())
    H.raises("syscall", function() c:write("more") end) -- remembered
  end)

  it("record_fed_one_byte_at_a_time_is_read_whole", function()
    local c, s = memory_pair()
    c:key_update("requested")
    c:write("split into single bytes")
    local wire = c:drain()
    for i = 1, #wire - 1 do
      s:feed(wire:sub(i, i))
      local data, want = s:read()
      assert.is_nil(data)
      assert.equal("want_read", want)
    end
    s:feed(wire:sub(-1))
    assert.equal("split into single bytes", s:read())
    assert.equal(1, s:stats().key_updates_received)
  end)

  for _, cut in ipairs { "header", "body", "after_key_update" } do
    it("truncated_record_then_eof_is_syscall_error (" .. cut .. ")", function()
      local c, s = memory_pair()
      if cut == "after_key_update" then c:key_update("not_requested") end
      c:write(string.rep("a record that will not arrive whole", 10))
      local wire = c:drain()
      local keep = ({ header = 3, body = #wire // 2, after_key_update = #wire - 5 })[cut]
      s:feed(wire:sub(1, keep))
      assert.is_nil((s:read()))
      s:feed_eof()
      local err = H.raises("syscall", function() s:read() end)
      assert.equal("unexpected eof while reading", err.reason)
      assert.equal("failed", s:state())
      H.raises("syscall", function() s:read() end)
    end)
  end

  it("truncated_record_with_ignore_unexpected_eof_still_fails", function()
    local c, s = memory_pair { ignore_unexpected_eof = true }
    c:write(string.rep("x", 1000))
    local wire = c:drain()
    s:feed(wire:sub(1, #wire // 2))
    s:feed_eof()
    local ok, err = pcall(s.read, s)
    assert.is_false(ok, "a half record read as data or as a clean close")
    assert.is_true(tlsrekey.is_error(err), tostring(err))
    assert.equal("syscall", err.code)
    assert.matches("truncated", err.message)
  end)

  it("corrupted_record_is_protocol_error_and_remembered", function()
    local c, s = memory_pair()
    c:write("tamper with me")
    local wire = c:drain()
    wire = wire:sub(1, -2) .. string.char(wire:byte(-1) ~ 1)
    s:feed(wire)
    local err = H.raises("protocol", function() s:read() end)
    assert.matches("bad record mac", err.reason)
    assert.equal("failed", s:state())
    H.raises("protocol", function() s:write("no") end)
  end)

  -- -- a timeout inside a renegotiation ---------------------------------------------

  it("timeout_during_renegotiation_then_recovery", function()
    local c, s = H.transports[2].new { max_version = "TLSv1.2",
                                       allow_client_renegotiation = true }
    c:renegotiate()
    c:settimeout(0.3)
    local t0 = socket.gettime()
    H.raises("timeout", function() c:write("during") end)
    local took = socket.gettime() - t0
    assert.is_true(took >= 0.25 and took < 3, tostring(took))
    assert.is_true(c:renegotiate_pending())
    -- the server wakes up; the retried write completes the renegotiation
    c:settimeout(0)
    assert.equal("during", H.exchange(c, s, "during"))
    assert.equal(1, c:stats().renegotiations)
    assert.equal("after", H.exchange(s, c, "after"))
  end)
end)
