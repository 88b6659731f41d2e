-- A coroutine server over non-blocking LuaSocket sockets (the copas way; Debian's
-- lua-copas is packaged for Lua 5.1/5.2 only): tlsrekey_compat objects in timeout-0
-- mode, each connection a coroutine that yields to a socket.select loop whenever a
-- call says "timeout"/"wantread"/"wantwrite". Several clients stream lines through
-- one server while both ends update their keys (TLS 1.3) or the server renegotiates
-- (TLS 1.2) mid-stream; every line comes back intact and the counters agree.
local H = require "helpers"
local tlsrekey = H.tlsrekey
local socket = H.socket
local compat = require "tlsrekey_compat"

local LIMIT = 20 -- seconds a whole run may take

--- A minimal dispatcher: spawn(fn, ...) starts a coroutine; a coroutine yields
-- ("read" | "write", obj) to wait for obj (anything socket.select takes); run()
-- returns once every coroutine has finished, and fails past LIMIT.
local function dispatcher()
  local D = { live = 0, runnable = {}, readers = {}, writers = {} }

  function D.spawn(fn, ...)
    D.live = D.live + 1
    D.runnable[#D.runnable + 1] = { coroutine.create(fn), table.pack(...) }
  end

  local function resume(co, args)
    local ok, how, obj = coroutine.resume(co, table.unpack(args, 1, args.n))
    if not ok then error(debug.traceback(co, tostring(how)), 0) end
    if coroutine.status(co) == "dead" then
      D.live = D.live - 1
    elseif how == "write" then
      D.writers[obj] = co
    else
      D.readers[obj] = co
    end
  end

  local none = table.pack()
  function D.run()
    local deadline = socket.gettime() + LIMIT
    while D.live > 0 do
      local runnable = D.runnable
      D.runnable = {}
      for _, item in ipairs(runnable) do resume(item[1], item[2]) end
      if D.live > 0 and #D.runnable == 0 then
        local r, w = {}, {}
        for obj in pairs(D.readers) do r[#r + 1] = obj end
        for obj in pairs(D.writers) do w[#w + 1] = obj end
        local rr, ww = socket.select(r, w, 0.5)
        for _, list in ipairs { { rr, D.readers }, { ww, D.writers } } do
          for _, obj in ipairs(list[1]) do
            local co = list[2][obj]
            list[2][obj] = nil
            D.runnable[#D.runnable + 1] = { co, none }
          end
        end
      end
      assert(socket.gettime() < deadline, "the coroutine server did not finish")
    end
  end
  return D
end

-- Blocking-looking calls for coroutines: they yield while the object would block.
local function wait_for(conn)
  coroutine.yield(conn:want() == "write" and "write" or "read", conn)
end

local function handshake(conn)
  while true do
    local ok, err = conn:dohandshake()
    if ok then return true end
    assert(err == "wantread" or err == "wantwrite", err)
    coroutine.yield(err == "wantwrite" and "write" or "read", conn)
  end
end

local function receive(conn, pattern)
  local partial
  while true do
    local data, err, part = conn:receive(pattern, partial)
    if data then return data end
    if err ~= "timeout" then return nil, err end
    partial = part
    wait_for(conn)
  end
end

local function send(conn, data)
  local i = 1
  while true do
    local last, err, sent = conn:send(data, i)
    if last then return last end
    assert(err == "timeout", err)
    i = sent + 1
    wait_for(conn)
  end
end

--- Runs a server and `nclients` clients in one dispatcher. Each client sends
-- `lines` lines in batches of 10 and reads the echoes; client_hook(conn, n) and
-- server_hook(conn, n) run after line n (1-based) is sent / echoed. Returns the
-- clients' and the server connections' stats and the order lines reached the server.
local function run(opts)
  local cctx, sctx, hostname = tlsrekey.pair_contexts(opts.pair)
  local srv, port = H.listen()
  srv:settimeout(0)
  local D = dispatcher()
  local server_stats, client_stats, arrivals, finished = {}, {}, {}, 0

  local function handle(sock)
    local conn = assert(compat.wrap(sock, sctx))
    conn:settimeout(0)
    handshake(conn)
    local n = 0
    while true do
      local line, err = receive(conn, "*l")
      if not line then
        assert.equal("closed", err)
        break
      end
      n = n + 1
      arrivals[#arrivals + 1] = line:match("^client (%d+)")
      send(conn, "echo " .. line .. "\n")
      if opts.server_hook then opts.server_hook(conn, n) end
    end
    server_stats[#server_stats + 1] = conn:stats()   -- close() ends the connection
    conn:close()
  end

  D.spawn(function()
    local accepted = 0
    while accepted < opts.clients do
      local sock = srv:accept()
      if sock then
        accepted = accepted + 1
        D.spawn(handle, sock)
      else
        coroutine.yield("read", srv)
      end
    end
  end)

  local function client(id)
    local sock = socket.tcp()
    sock:settimeout(5)
    assert(sock:connect("127.0.0.1", port))
    local conn = assert(compat.wrap(sock, cctx, { server_hostname = hostname }))
    conn:settimeout(0)
    handshake(conn)
    for batch = 0, opts.lines / 10 - 1 do
      for k = 1, 10 do
        local n = batch * 10 + k
        send(conn, ("client %d line %d %s\n"):format(id, n, ("x"):rep(n % 50)))
        if opts.client_hook then opts.client_hook(conn, n) end
      end
      for k = 1, 10 do
        local n = batch * 10 + k
        assert.equal(("echo client %d line %d %s"):format(id, n, ("x"):rep(n % 50)),
                     receive(conn, "*l"))
      end
    end
    finished = finished + 1
    if finished == 1 then arrivals.at_first_finish = #arrivals end
    client_stats[id] = conn:stats()
    conn:close()
  end
  for id = 1, opts.clients do D.spawn(client, id) end

  D.run()
  return client_stats, server_stats, arrivals
end

local function sum(stats, key)
  local total = 0
  for _, st in ipairs(stats) do total = total + st[key] end
  return total
end

describe("a coroutine server over non-blocking sockets", function()
  after_each(H.cleanup)

  it("serves_several_clients_that_update_keys_mid_stream", function()
    local clients, lines = 6, 120
    local client_stats, server_stats, arrivals = run {
      clients = clients, lines = lines,
      client_hook = function(conn, n)
        -- lines 20, 50, 80, 110; 50 and 110 ask for the server's update too
        if n % 30 == 20 then conn:key_update(n % 60 == 50 and "requested" or "not_requested") end
      end,
      server_hook = function(conn, n)
        if n % 50 == 0 then conn:key_update() end
      end,
    }
    assert.equal(clients, #server_stats)
    -- the clients really ran side by side: before the first one finished, lines
    -- from several of them had reached the server
    local seen = {}
    for i = 1, arrivals.at_first_finish do seen[arrivals[i]] = true end
    local count = 0
    for _ in pairs(seen) do count = count + 1 end
    assert.is_true(count >= 2, "only one client ran at a time")
    for _, st in ipairs(client_stats) do
      assert.equal(4, st.key_updates_sent)
      assert.equal(2, st.key_update_requests_sent)
      assert.equal(4, st.key_updates_received)      -- the server's 2, its 2 replies
    end
    -- what one side sent, the other received, counted independently
    assert.equal(sum(client_stats, "key_updates_sent"), sum(server_stats, "key_updates_received"))
    assert.equal(sum(server_stats, "key_updates_sent"), sum(client_stats, "key_updates_received"))
    assert.equal(clients * 2, sum(server_stats, "key_update_requests_received"))
    -- each server connection: 2 updates of its own (lines 50, 100), 2 replies
    assert.equal(clients * 4, sum(server_stats, "key_updates_sent"))
  end)

  it("serves_several_clients_while_it_renegotiates_on_tls12", function()
    local clients = 4
    local client_stats, server_stats = run {
      clients = clients, lines = 60, pair = { max_version = "TLSv1.2" },
      server_hook = function(conn, n)
        if n == 25 then conn:renegotiate() end      -- goes on with the next I/O
      end,
    }
    assert.equal(clients, sum(server_stats, "hello_requests_sent"))
    assert.equal(clients, sum(client_stats, "hello_requests_received"))
    assert.equal(clients, sum(server_stats, "renegotiations"))
    assert.equal(clients, sum(client_stats, "renegotiations"))
  end)
end)
