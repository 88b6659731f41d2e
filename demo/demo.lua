-- make demo, the Lua half: a TLS 1.3 key update both ways, then TLS 1.2
-- renegotiation started by the client and by the server, with the counters.
-- Client and server are one process: tlsrekey.pair() joins them in memory.
local tlsrekey = require "tlsrekey"

local function say(fmt, ...) print(("  " .. fmt):format(...)) end

-- Each end prints the KeyUpdate/HelloRequest/handshake events it sees, as they
-- happen, indented under the call that caused them.
local function watch(conn, who)
  conn:on_event(function(ev)
    local what = ev.name
    if ev.request_update ~= nil then
      what = what .. (ev.request_update and " (update_requested)" or " (update_not_requested)")
    elseif ev.alert_text then
      what = what .. " (" .. ev.alert_level .. ": " .. ev.alert_text .. ")"
    end
    say("      %-6s event: %s", who, what)
  end)
end

-- from:write(data), then to:read(): the events of both appear under this line.
local function send(from, to, data)
  say("%s -> %s: %q", from:role(), to:role(), data)
  from:write(data)
  local got = to:read()
  assert(got == data, ("%s read %q, expected %q"):format(to:role(), got, data))
end

local function counters(c, s, names)
  local cs, ss = c:stats(), s:stats()
  say("%-30s %8s %8s", "counter", "client", "server")
  for _, k in ipairs(names) do
    say("%-30s %8d %8d", k, cs[k], ss[k])
  end
end

print(("tlsrekey %s (Lua) on %s"):format(tlsrekey._VERSION, tlsrekey.OPENSSL_VERSION))

print("\nTLS 1.3: key update")
do
  local c, s = tlsrekey.pair()
  watch(c, "client"); watch(s, "server")
  say("handshaken: %s, %s", c:version(), c:cipher())
  send(c, s, "hello")

  c:key_update("requested")
  say("client:key_update(\"requested\"): scheduled, nothing sent yet")
  say("client:get_key_update_type() -> %q", c:get_key_update_type())

  send(c, s, "after the update")
  say("client:get_key_update_type() -> %q (sent with that write)", c:get_key_update_type())
  say("server:get_key_update_type() -> %q (the reply it owes)", s:get_key_update_type())

  send(s, c, "ok")
  say("server:get_key_update_type() -> %q (replied with that write)", s:get_key_update_type())
  counters(c, s, { "key_updates_sent", "key_updates_received",
                   "key_update_requests_sent", "key_update_requests_received" })
  c:close(); s:close()
end

print("\nTLS 1.2: renegotiation")
do
  local c, s = tlsrekey.pair{ max_version = "TLSv1.2", allow_client_renegotiation = true }
  watch(c, "client"); watch(s, "server")
  say("handshaken: %s, %s", c:version(), c:cipher())

  c:renegotiate()
  say("client:renegotiate() (full)   pending: %s", c:renegotiate_pending())
  send(c, s, "during")
  send(s, c, "done")
  say("pending: client %s, server %s; session reused: %s",
      c:renegotiate_pending(), s:renegotiate_pending(), c:session_reused())

  s:renegotiate()
  say("server:renegotiate() (HelloRequest)   pending: %s", s:renegotiate_pending())
  send(s, c, "ping")
  send(c, s, "pong")
  say("pending: client %s, server %s; session reused: %s",
      c:renegotiate_pending(), s:renegotiate_pending(), c:session_reused())
  counters(c, s, { "handshakes", "renegotiations", "hello_requests_sent",
                   "hello_requests_received" })
  c:close(); s:close()
end
