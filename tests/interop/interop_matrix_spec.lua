-- The interop matrix for the Lua binding: tlsrekey connections (non-blocking, over
-- TCP on 127.0.0.1) against openssl s_server/s_client, GnuTLS gnutls-serv/gnutls-cli
-- and a LuaSec echo peer. Data is checked byte for byte before and after every key
-- update and renegotiation. The Python suite (test_interop_matrix_*.py) runs the
-- wider matrix; this one proves the Lua binding against the same peers, GnuTLS
-- included. A table of case x peer is printed at the end.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local I = require "interop_helpers"
local H, tlsrekey = I.H, I.tlsrekey

local TLS12 = { version = "1.2" }

local function have(cmd) return os.execute(cmd .. " >/dev/null 2>&1") end
local available = have("openssl version") and have("gnutls-cli --version")
                  and pcall(require, "ssl")

local describe_if = available and describe or pending

describe_if("interop matrix (Lua binding)", function()
  I.it = it
  after_each(H.cleanup)
  teardown(function()
    I.print_matrix()
    I.remove_certs()
  end)

  local ALL = { "openssl", "gnutls", "LuaSec" }

  -- TLS 1.3 key update, ours ------------------------------------------------

  local function ours_key_update(role, peer, type)
    local s = role == "client" and I.as_client(peer) or I.as_server(peer)
    assert.equal("TLSv1.3", s.conn:version())
    s:roundtrip()
    s.conn:key_update(type)
    assert.equal(type, s.conn:get_key_update_type())
    s:roundtrip()
    s:roundtrip()
    local st = s.conn:stats()
    assert.equal(1, st.key_updates_sent)
    assert.equal(type == "requested" and 1 or 0, st.key_update_requests_sent)
    assert.equal(type == "requested" and 1 or 0, st.key_updates_received)
    assert.equal("none", s.conn:get_key_update_type())
    if peer == "openssl" then I.wait_pattern(s.peer, I.MSG.RECV_KU, 1) end
  end

  for _, role in ipairs { "client", "server" } do
    for _, type in ipairs { "not_requested", "requested" } do
      I.matrix(("1.3 KU %s, we %s"):format(type, role), ALL, function(peer)
        ours_key_update(role, peer, type)
      end)
    end
  end

  -- TLS 1.3 key update, the peer's -------------------------------------------

  I.matrix("1.3 peer KU requested, we client", { "openssl" }, function(peer)
    local s = I.as_client(peer)
    s:roundtrip()
    s:peer_sends(function() s:command("K", I.MSG.SENT_KU) end)
    local st = s.conn:stats()
    assert.equal(1, st.key_updates_received)
    assert.equal(1, st.key_update_requests_received)
    assert.equal("not_requested", s.conn:get_key_update_type()) -- the owed answer
    s:roundtrip()
    assert.equal(1, s.conn:stats().key_updates_sent)
    I.wait_pattern(s.peer, I.MSG.RECV_KU, 1)
  end)

  I.matrix("1.3 peer KU requested, we server", { "openssl", "gnutls" }, function(peer)
    local s = I.as_server(peer)
    s:roundtrip()
    -- gnutls-cli: ^rekey^ asks for our update too; ^rekey1^ does not
    s:peer_sends(function()
      if peer == "gnutls" then s:command("^rekey^", "Rekey was completed")
      else s:command("K", "KEYUPDATE") end
    end)
    local st = s.conn:stats()
    assert.equal(1, st.key_updates_received)
    assert.equal(1, st.key_update_requests_received)
    s:roundtrip()
    assert.equal(1, s.conn:stats().key_updates_sent)
    assert.equal("none", s.conn:get_key_update_type())
  end)

  I.matrix("1.3 peer KU not_requested, we server", { "gnutls" }, function(peer)
    local s = I.as_server(peer)
    s:roundtrip()
    s:peer_sends(function() s:command("^rekey1^", "Rekey was completed") end)
    assert.equal(1, s.conn:stats().key_updates_received)
    assert.equal(0, s.conn:stats().key_update_requests_received)
    assert.equal("none", s.conn:get_key_update_type())
    s:roundtrip()
  end)

  -- TLS 1.2 renegotiation ----------------------------------------------------

  I.matrix("1.2 reneg full, we client", ALL, function(peer)
    local s = I.as_client(peer, { version = "1.2", allow_client_reneg = true })
    assert.equal("TLSv1.2", s.conn:version())
    s:roundtrip()
    s.conn:renegotiate()
    assert.is_true(s.conn:renegotiate_pending())
    s:roundtrip()
    s:roundtrip()
    assert.equal(1, s.conn:stats().renegotiations)
    assert.is_false(s.conn:renegotiate_pending())
    assert.is_false(s.conn:session_reused())
  end)

  I.matrix("1.2 reneg by HelloRequest, we server", ALL, function(peer)
    local s = I.as_server(peer, TLS12)
    s:roundtrip()
    s.conn:renegotiate()
    s.conn:do_handshake() -- the HelloRequest alone (GnuTLS rejects data after it)
    assert.equal(1, s.conn:stats().hello_requests_sent)
    s:settle("the client's new handshake", function()
      return s.conn:stats().renegotiations == 1
    end)
    s:roundtrip()
    assert.is_false(s.conn:renegotiate_pending())
  end)

  I.matrix("1.2 peer reneg, we server (allowed)", { "openssl", "gnutls" }, function(peer)
    local s = I.as_server(peer, TLS12, { allow_client_renegotiation = true })
    s:roundtrip()
    if peer == "gnutls" then
      -- gnutls-cli blocks in its rehandshake: our reads must run meanwhile
      local n = s.peer:count("ReHandshake was completed")
      s:peer_sends(function() s.peer:send("^renegotiate^") end, function()
        return s.peer:count("ReHandshake was completed") > n
      end)
    else
      s:peer_sends(function() s:command("R", "RENEGOTIATING") end)
    end
    s:roundtrip()
    assert.equal(1, s.conn:stats().renegotiations)
  end)

  I.matrix("1.2 reneg refused by peer default, we client", { "openssl", "LuaSec" },
           function(peer)
    local s = I.as_client(peer, TLS12)
    s:roundtrip()
    s.conn:renegotiate()
    local err = H.error_of(function() s:roundtrip() end)
    assert.is_true(tlsrekey.is_error(err), tostring(err))
    assert.equal("protocol", err.code)
    assert.matches("no renegotiation", err.reason)
    assert.equal(0, s.conn:stats().renegotiations)
    assert.equal("failed", s.conn:state())
  end)

  I.matrix("1.2 KU refused, reneg on 1.3 refused", { "gnutls" }, function(peer)
    local s = I.as_client(peer, TLS12)
    H.raises("state", function() s.conn:key_update() end)
    s:roundtrip()
    local s13 = I.as_client(peer)
    H.raises("state", function() s13.conn:renegotiate() end)
    s13:roundtrip()
  end)
end)
