-- Automatic rekeying: the core's policy, seen from Lua (mirrors test_policy.py).
local tlsrekey = require "tlsrekey"
local core = require "tlsrekey.core"

local function send(from, to, data)
  assert(from:write(data) == #data)
  local got = {}
  local n = 0
  while n < #data do
    local chunk = assert(to:read(65536))
    got[#got + 1] = chunk
    n = n + #chunk
  end
  return table.concat(got)
end

describe("rekey policy", function()
  after_each(function() collectgarbage(); collectgarbage() end)

  it("rekeys every n records, counted by the peer", function()
    local c, s = tlsrekey.pair()
    c:set_rekey_policy{ records = 10 }
    for i = 1, 1000 do
      assert.equal("r" .. i, send(c, s, "r" .. i))
    end
    assert.equal(99, c:stats().key_updates_sent)
    assert.equal(99, s:stats().key_updates_received)
    assert.equal(99, c:stats().automatic_rekeys)
  end)

  it("splits a large write at the byte threshold and can request the peer's update", function()
    local c, s = tlsrekey.pair()
    c:set_rekey_policy{ bytes = 100000, request_peer = true }
    local data = string.rep("0123456789", 100000)
    assert.equal(data, send(c, s, data))
    assert.equal(9, c:stats().key_updates_sent)
    assert.equal(9, s:stats().key_update_requests_received)
    -- the server answers inside its reads while more data follows; the last
    -- request is owed until its next write, which sends exactly one reply
    local before = s:stats().key_updates_sent
    assert.is_true(before <= 9)
    s:write("")
    assert.equal("none", s:get_key_update_type())
    assert.is_true(s:stats().key_updates_sent <= before + 1)
    assert.same({ nil, "want_read" }, { c:read(10) }) -- takes in the reply, no data
    assert.equal(s:stats().key_updates_sent, c:stats().key_updates_received)
  end)

  it("reports each automatic update as an event", function()
    local c, s = tlsrekey.pair()
    local seen = {}
    c:on_event(function(ev) seen[#seen + 1] = ev end)
    c:set_rekey_policy{ records = 2 }
    for _ = 1, 3 do send(c, s, "x") end
    assert.equal(1, #seen)
    assert.equal("key_update_sent", seen[1].name)
    assert.is_true(seen[1].automatic)
    assert.is_false(seen[1].request_update)
  end)

  it("takes a default policy from the context", function()
    local c, s = tlsrekey.pair{ rekey = { bytes = 4096 } }
    assert.equal(4096, c:get_rekey_policy().bytes)
    assert.equal(4096, s:get_rekey_policy().bytes)
    send(c, s, string.rep("z", 10000))
    assert.equal(2, c:stats().key_updates_sent)
  end)

  it("enforces the AEAD limit on AES-GCM by default and can be turned off", function()
    core._testing_set_aead_scale(1 << 21) -- 8 records per key instead of 2^24
    local ok, err = pcall(function()
      local c, s = tlsrekey.pair{ ciphersuites = "TLS_AES_128_GCM_SHA256" }
      for _ = 1, 80 do send(c, s, "x") end
      assert.equal(9, c:stats().key_updates_sent)
      c:set_rekey_policy{ aead_limit = false }
      for _ = 1, 80 do send(c, s, "x") end
      assert.equal(9, c:stats().key_updates_sent)
      local c2, s2 = tlsrekey.pair{ ciphersuites = "TLS_CHACHA20_POLY1305_SHA256" }
      for _ = 1, 80 do send(c2, s2, "x") end
      assert.equal(0, c2:stats().key_updates_sent)
    end)
    core._testing_set_aead_scale(1)
    assert(ok, err)
  end)

  it("is a state error on TLS 1.2 unless use_renegotiation is set", function()
    local c, s = tlsrekey.pair{ max_version = "TLSv1.2", allow_client_renegotiation = true }
    local ok, err = pcall(c.set_rekey_policy, c, { records = 5 })
    assert.is_false(ok)
    assert.equal("state", err.code)
    assert.matches("use_renegotiation", err.message)
    c:set_rekey_policy{ records = 5, use_renegotiation = true }
    for _ = 1, 20 do send(c, s, "y") end
    assert.equal(3, c:stats().renegotiations)
    assert.equal(3, s:stats().renegotiations)
    assert.same({ records = 5, request_peer = false, use_renegotiation = true,
                  aead_limit = true }, c:get_rekey_policy())
  end)

  for _, option in ipairs { "bytes", "records", "seconds" } do
    it("refuses a zero '" .. option .. "' instead of taking it as no limit", function()
      local c = tlsrekey.pair()
      c:set_rekey_policy{ [option] = 5 }
      for _, zero in ipairs { 0, 0.0 } do
        local ok, err = pcall(function() c:set_rekey_policy{ [option] = zero } end)
        assert.is_false(ok)
        assert.matches("bad argument #1 to 'set_rekey_policy'", err, 1, true)
        assert.matches("'" .. option .. "'", err, 1, true)
      end
      assert.equal(5, c:get_rekey_policy()[option]) -- the policy in force is kept
      local ok, err = pcall(tlsrekey.context, { mode = "client", rekey = { [option] = 0 } })
      assert.is_false(ok)
      assert.matches("'" .. option .. "'", err, 1, true)
      ok, err = pcall(tlsrekey.pair, { rekey = { [option] = 0 } })
      assert.is_false(ok)
      assert.matches("'" .. option .. "'", err, 1, true)
    end)
  end

  it("takes integral floats as whole counts and refuses fractions", function()
    local c, s = tlsrekey.pair()
    c:set_rekey_policy{ bytes = 1e4, records = 2^20 }
    local policy = c:get_rekey_policy()
    assert.equal(10000, policy.bytes)
    assert.equal(math.type(10000), math.type(policy.bytes))
    assert.equal(1 << 20, policy.records)
    local data = string.rep("x", 35000)
    assert.equal(data, send(c, s, data))
    assert.equal(3, c:stats().automatic_rekeys) -- at 10000, 20000 and 30000 bytes
    tlsrekey.context { mode = "client", verify = false, rekey = { bytes = 2^30 } }
    for _, bad in ipairs { { "bytes", 1.5 }, { "records", 0.25 }, { "bytes", math.huge },
                           { "records", 0 / 0 }, { "bytes", 2.0^64 }, { "records", -1 },
                           { "records", -1.0 }, { "bytes", math.mininteger } } do
      local ok, err = pcall(function() c:set_rekey_policy{ [bad[1]] = bad[2] } end)
      assert.is_false(ok, bad[1] .. " = " .. tostring(bad[2]))
      assert.matches("bad argument #1 to 'set_rekey_policy'", err, 1, true)
      assert.matches("'" .. bad[1] .. "'", err, 1, true)
    end
    assert.same(policy, c:get_rekey_policy())
    c:set_rekey_policy{ seconds = 2 }
    assert.equal(2, c:get_rekey_policy().seconds)
  end)

  it("rejects bad policy tables naming the problem", function()
    local c = tlsrekey.pair()
    assert.has_error(function() c:set_rekey_policy{ byts = 1 } end,
      "bad argument #1 to 'set_rekey_policy' (unknown rekey policy option 'byts')")
    assert.has_error(function() c:set_rekey_policy{ records = -1 } end)
    assert.has_error(function() c:set_rekey_policy{ seconds = "soon" } end)
    assert.has_error(function() c:set_rekey_policy(5) end)
    assert.has_error(function()
      tlsrekey.context{ mode = "client", rekey = { bytes = "many" } }
    end)
  end)
end)

describe("rekey policy against openssl s_server", function()
  local H = require "helpers"
  after_each(H.cleanup)

  local RECV_KU = "<<< TLS 1%.3, Handshake %[length %x+%], KeyUpdate"

  it("records=10 over 1000 writes: the peer counts the key updates", function()
    local port = H.free_port()
    local cpath, kpath = H.cert_files()
    local p = H.spawn { "openssl", "s_server", "-accept", "127.0.0.1:" .. port,
                        "-cert", cpath, "-key", kpath, "-msg", "-naccept", "1" }
    assert(p:wait_output("ACCEPT"), "s_server did not start:\n" .. p:output())
    local ctx = tlsrekey.context { mode = "client", cafile = cpath,
                                   rekey = { records = 10 } }
    local c = ctx:connect("127.0.0.1", port, { server_hostname = "localhost", timeout = 5 })
    c:do_handshake()
    for i = 1, 1000 do assert.equal(6, c:write(("%05d\n"):format(i))) end
    assert.equal(99, c:stats().key_updates_sent)
    assert.equal(99, p:wait_count(RECV_KU, 99, 10), p:output():sub(-2000))
    -- and the data arrived in order, intact, between them
    assert(p:wait_output("01000\n"))
    local out = p:output():gsub("[<>][<>][<>][^\n]*\n", ""):gsub("    [^\n]*\n", "")
    local n = 0
    for line in out:gmatch("(%d%d%d%d%d)\n") do
      n = n + 1
      assert.equal(n, tonumber(line))
    end
    assert.equal(1000, n)
  end)
end)

describe("key log", function()
  local H = require "helpers"
  after_each(H.cleanup)

  local function labels(path)
    local seen = {}
    for label in H.read_file(path):gmatch("([%u%d_]+) %x+ %x+\n") do seen[label] = true end
    return seen
  end

  it("writes the TLS 1.3 secrets in NSS key log format", function()
    local path = H.tmpname(".keys")
    local c, s = tlsrekey.pair{ keylog = path }
    c:key_update("requested")
    assert.equal("x", H.exchange(c, s, "x"))
    local seen = labels(path)
    for _, l in ipairs { "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                         "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET" } do
      assert.is_true(seen[l], l)
    end
    assert.is_nil(seen.CLIENT_RANDOM)
  end)

  it("writes CLIENT_RANDOM lines for TLS 1.2, one per handshake", function()
    local path = H.tmpname(".keys")
    local c, s = tlsrekey.pair{ keylog = path, max_version = "TLSv1.2",
                                allow_client_renegotiation = true }
    c:renegotiate()
    assert.equal("x", H.exchange(c, s, "x"))
    local n = select(2, H.read_file(path):gsub("CLIENT_RANDOM %x+ %x+\n", ""))
    assert.equal(4, n) -- two handshakes, logged by both ends
  end)

  it("keylog = true honours SSLKEYLOGFILE, and is silent without it", function()
    local path = H.tmpname(".keys")
    local script = [[local t = require "tlsrekey"; local c, s = t.pair{ keylog = true }
      assert(c:write("x") == 1 and s:read() == "x")]]
    assert.is_true(os.execute(("SSLKEYLOGFILE=%s lua5.4 -e %s"):format(
      H.shell_quote(path), H.shell_quote(script))))
    assert.truthy(H.read_file(path):find("CLIENT_TRAFFIC_SECRET_0 ", 1, true))
    assert.is_true(os.execute(("env -u SSLKEYLOGFILE lua5.4 -e %s"):format(
      H.shell_quote(script))))
    assert.has_error(function() tlsrekey.context{ mode = "server", keylog = 5 } end)
  end)
end)

describe("rekey policy on a TLS 1.2 server", function()
  after_each(function() collectgarbage(); collectgarbage() end)

  it("a TLS 1.2 server that only writes holds its renegotiation limit", function()
    -- the client reads (and so answers each HelloRequest); the server never
    -- reads: its writes take in the client's new handshake (issue 15, item 8)
    local c, s = tlsrekey.pair { max_version = "TLSv1.2" }
    s:set_rekey_policy { bytes = 65536, use_renegotiation = true }
    local piece = string.rep("d", 16384)
    local total, got = 0, 0
    for _ = 1, 64 do
      assert.equal(#piece, s:write(piece))
      total = total + #piece
      while got < total do got = got + #assert(c:read(65536)) end
    end
    assert.is_true(s:stats().renegotiations >= 8, tostring(s:stats().renegotiations))
    assert.equal(s:stats().renegotiations, c:stats().renegotiations)
  end)
end)

describe("rekey policy on what is read", function()
  after_each(function() collectgarbage(); collectgarbage() end)

  it("read_bytes asks the peer to update from inside the reads of a download", function()
    local c, s = tlsrekey.pair { max_version = "TLSv1.3" }
    c:set_rekey_policy { read_bytes = 100000 }
    assert.equal(100000, c:get_rekey_policy().read_bytes)
    local piece = string.rep("d", 16384)
    for _ = 1, 64 do                         -- 1 MiB
      assert.equal(#piece, s:write(piece))
      local got = 0
      while got < #piece do got = got + #assert(c:read(65536)) end
      local _, want = s:read()               -- an event loop: takes in what came
      assert.equal("want_read", want)
    end
    local requests = c:stats().key_update_requests_sent
    assert.is_true(requests >= 8 and requests <= 11, tostring(requests))
    assert.equal(requests, c:stats().automatic_rekeys)
    assert.equal(requests, s:stats().key_update_requests_received)
  end)

  it("min_interval makes the thresholds wait", function()
    local c, s = tlsrekey.pair { max_version = "TLSv1.3" }
    c:set_rekey_policy { bytes = 10000, min_interval = 30 }
    assert.equal(30, c:get_rekey_policy().min_interval)
    local data = string.rep("x", 500000)
    assert.equal(#data, c:write(data))
    local got = 0
    while got < #data do got = got + #assert(s:read(65536)) end
    assert.equal(0, c:stats().key_updates_sent)
  end)

  it("refuses a read_bytes or min_interval that means nothing", function()
    local c = tlsrekey.pair()
    for _, bad in ipairs { { read_bytes = 0 }, { min_interval = 0 }, { min_interval = -1 },
                           { min_interval = math.huge }, { read_bytes = 1.5 } } do
      local name = next(bad)
      local ok, err = pcall(c.set_rekey_policy, c, bad)
      assert.is_false(ok)
      assert.truthy(tostring(err):find(name, 1, true), tostring(err))
    end
  end)
end)
