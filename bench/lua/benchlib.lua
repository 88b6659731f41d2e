-- What the Lua benchmark programs share: arguments, the pinned parameters and their
-- check, the output line, RSS, the socket set-up. The workload loops are written out
-- in each program with methods in locals (bench/README.md). Arguments and output are
-- those of bench/c/limit.c.
local socket = require "socket"
local unix = require "socket.unix"

local B = {
  CHUNK = 16384, MSG = 64, HOST = "localhost",
  SUITE13 = "TLS_AES_128_GCM_SHA256",
  CIPHER12 = "ECDHE-ECDSA-AES128-GCM-SHA256",
  -- TLS 1.2 accepts a P-256 certificate only with P-256 among the groups; the key
  -- exchange is still X25519.
  GROUPS13 = "X25519", GROUPS12 = "X25519:P-256",
  now = socket.gettime,
}

-- The workload's clocks: wall time and this process's CPU time (os.clock).
local clock = {}

function B.start()
  clock = { cpu0 = os.clock(), wall0 = socket.gettime() }
end

function B.stop()
  clock.wall1 = socket.gettime()
  clock.cpu1 = os.clock()
end

-- Adds elapsed (wall seconds) and cpu (CPU seconds) since B.start() to t; stops the
-- clocks first if B.stop() was not called.
function B.timed(t)
  if not clock.wall1 then B.stop() end
  t.elapsed = clock.wall1 - clock.wall0
  t.cpu = clock.cpu1 - clock.cpu0
  return t
end

function B.fail(msg)
  io.stderr:write((arg and arg[0] or "bench") .. ": " .. tostring(msg) .. "\n")
  os.exit(1)
end

function B.parse_args(argv)
  local a = {}
  for i = 1, #argv, 2 do
    local k, v = argv[i], argv[i + 1]
    if v == nil or k:sub(1, 2) ~= "--" then B.fail("bad arguments") end
    a[k:sub(3)] = v
  end
  a.count = tonumber(a.count)
  a.fd = a.fd and tonumber(a.fd)
  if not (a.workload and a.count and a.transport and a.cert and a.key) then
    B.fail("usage: --workload W --count N --transport pair|socket --cert C --key K " ..
           "[--role client|server --fd FD | --path P]")
  end
  a.tls12 = a.workload == "W3b"
  a.server = a.role == "server"
  return a
end

local function json(v)
  local t = type(v)
  if t == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = string.format("%q: %s", k, json(x)) end
    table.sort(parts)
    return "{" .. table.concat(parts, ", ") .. "}"
  elseif t == "string" then
    return string.format("%q", v)
  elseif t == "number" then
    return string.format(math.type(v) == "integer" and "%d" or "%.9f", v)
  elseif v == nil then
    return "null"
  end
  return tostring(v)
end

function B.emit(fields)
  io.stdout:write(json(fields), "\n")
  io.stdout:flush()
end

function B.na(reason)
  B.emit { na = reason }
  os.exit(0)
end

-- Fails loudly unless the pinned parameters were negotiated; group nil: the binding
-- cannot tell, and the program pinned it by configuration.
function B.check(a, version, cipher, group)
  local wv = a.tls12 and "TLSv1.2" or "TLSv1.3"
  local wc = a.tls12 and B.CIPHER12 or B.SUITE13
  if version ~= wv or cipher ~= wc or (group ~= nil and group:upper() ~= "X25519") then
    B.fail(("negotiated %s %s %s, wanted %s %s X25519"):format(
      tostring(version), tostring(cipher), tostring(group), wv, wc))
  end
  return { version = version, cipher = cipher, group = group or "X25519 (pinned)" }
end

function B.rss()
  collectgarbage("collect")
  collectgarbage("collect")
  local f = assert(io.open("/proc/self/statm"))
  local _, resident = f:read("n", "n")
  f:close()
  return resident * 4096
end

function B.listen(path)
  local s = assert(unix.stream())
  assert(s:bind(path))
  assert(s:listen(512))
  return s
end

-- Waits up to 10 s for the server process to listen on path.
function B.connect(path)
  for _ = 1, 1000 do
    local s = assert(unix.stream())
    if s:connect(path) then return s end
    s:close()
    socket.sleep(0.01)
  end
  B.fail("cannot connect to " .. path)
end

return B
