-- Session resumption never satisfies a stricter client-certificate check than the
-- one that made the session (tests/python/test_resumption.py, the same rule from
-- Python). The resuming client is `openssl s_client -sess_out` / `-sess_in`; the
-- server is tlsrekey on a TCP socket on 127.0.0.1.
local tlsrekey = require "tlsrekey"
local H = require "helpers"
local socket = H.socket

local have_openssl = os.execute("openssl version >/dev/null 2>&1")
local describe_if = have_openssl and describe or pending

--- One connection from s_client (args appended) to a tlsrekey server connection,
-- `setup(server)` first. Returns the server connection (handshaken, a line echoed)
-- or nil and the handshake's error.
local function serve_one(sctx, cpath, args, setup)
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local argv = { "openssl", "s_client", "-connect", "127.0.0.1:" .. port, "-CAfile", cpath,
                 "-servername", "localhost" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local client = H.spawn(argv)
  srv:settimeout(5)
  local sock = assert(srv:accept())
  srv:close()
  H.defer(function() sock:close() end)
  local conn = sctx:wrap(sock, { timeout = 5 })
  if setup then setup(conn) end
  local ok, err = pcall(conn.do_handshake, conn)
  if not ok then
    client:kill()
    return nil, err
  end
  client:send("hello")
  local line = conn:read()
  conn:write(line)
  assert(client:wait_output("hello"), client:output())
  socket.sleep(0.2) -- the session ticket reaches s_client, which writes -sess_out
  client:kill()
  return conn, line
end

describe_if("session resumption and client certificates", function()
  after_each(H.cleanup)

  for _, version in ipairs { "-tls1_3", "-tls1_2" } do
    it("a_session_without_a_certificate_does_not_pass_a_required_check " .. version, function()
      local cpath, kpath = H.cert_files()
      local sctx = tlsrekey.context { mode = "server", cert = cpath, key = kpath, cafile = cpath }
      local sess = H.tmpname(".sess")
      assert(serve_one(sctx, cpath, { version, "-sess_out", sess }))
      -- the same session on a connection that requires a verified certificate: the
      -- client has none, so the handshake fails (before: resumed and let in)
      local conn, err = serve_one(sctx, cpath, { version, "-sess_in", sess }, function(c)
        c:set_verify_client(true, true)
      end)
      assert.is_nil(conn, "let in without a certificate")
      assert.truthy(tlsrekey.is_error(err), tostring(err))
    end)

    it("an_unverified_certificate_is_not_carried_into_a_verified_connection " .. version,
       function()
      local cpath, kpath = H.cert_files()
      local apath, akey = H.cert_files("admin") -- self-signed, not trusted
      local sctx = tlsrekey.context { mode = "server", cert = cpath, key = kpath, cafile = cpath }
      local sess = H.tmpname(".sess")
      local admin = { version, "-cert", apath, "-key", akey }
      local first = assert(serve_one(sctx, cpath, { version, "-cert", apath, "-key", akey,
                                                    "-sess_out", sess },
                                     function(c) c:set_verify_client(true, false) end))
      assert.truthy(first:peer_certificate()) -- accepted unverified
      admin[#admin + 1] = "-sess_in"
      admin[#admin + 1] = sess
      local conn = serve_one(sctx, cpath, admin, function(c) c:set_verify_client(true, true) end)
      assert.is_nil(conn, "resumed an unverified certificate as verified")
    end)

    it("sessions_still_resume_between_connections_with_the_same_check " .. version, function()
      local cpath, kpath = H.cert_files()
      local sctx = tlsrekey.context { mode = "server", cert = cpath, key = kpath, cafile = cpath }
      local sess = H.tmpname(".sess")
      assert(serve_one(sctx, cpath, { version, "-sess_out", sess }))
      local conn = assert(serve_one(sctx, cpath, { version, "-sess_in", sess }))
      assert.is_true(conn:session_reused())
    end)
  end
end)
