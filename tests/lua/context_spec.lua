-- Contexts: options, certificates from files, PEM strings or make_test_cert,
-- verification defaults, ALPN, versions, ciphers, keylog, client certificates.
-- Same case names as tests/python/test_context.py.
local H = require "helpers"
local tlsrekey = H.tlsrekey
local core = require "tlsrekey.core"

local function server_ctx(extra)
  local cert, key = tlsrekey.make_test_cert("localhost")
  local opts = { mode = "server", cert = cert, key = key }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return tlsrekey.context(opts), cert, key
end

describe("contexts", function()
  after_each(H.cleanup)

  it("unknown_option_is_an_error_naming_it", function()
    local msg = H.bad_argument(1, "context", tlsrekey.context, { mode = "client", verfy = false })
    assert.truthy(msg:find("unknown option 'verfy'", 1, true), msg)
    msg = H.bad_argument(1, "context", tlsrekey.context, { mode = "server", [1] = "x" })
    assert.truthy(msg:find("option names must be strings", 1, true), msg)
  end)

  it("wrong_option_types_name_the_option", function()
    for name, value in pairs { verify = "yes", check_hostname = 1, cafile = true, cert = 1,
                               min_version = 12, alpn = "h2", num_tickets = "2",
                               allow_client_renegotiation = "no", keylog = 5 } do
      local msg = H.bad_argument(1, "context", tlsrekey.context, { mode = "client", [name] = value })
      assert.truthy(msg:find("'" .. name .. "'", 1, true), msg)
    end
    H.bad_argument(1, "context", tlsrekey.context, { mode = "client", verify = "optional" })
  end)

  it("mode_is_required", function()
    local msg = H.bad_argument(1, "context", tlsrekey.context, { verify = false })
    assert.truthy(msg:find("mode", 1, true))
  end)

  it("unknown_version_is_an_argument_error", function()
    local msg = H.bad_argument(1, "context", tlsrekey.context, { mode = "client", min_version = "TLSv9" })
    assert.truthy(msg:find("min_version", 1, true), msg)
    H.bad_argument(1, "context", tlsrekey.context,
                   { mode = "client", min_version = "TLSv1.3", max_version = "TLSv1.2" })
  end)

  it("context_has_tostring_and_role", function()
    local sctx = server_ctx()
    assert.equal("server", sctx:role())
    assert.equal("tlsrekey.context server", tostring(sctx))
    local cctx = tlsrekey.context { mode = "client" }
    assert.equal("client", cctx:role())
  end)

  it("server_from_files", function()
    local cpath, kpath = H.cert_files()
    local sctx = tlsrekey.context { mode = "server", cert = cpath, key = kpath }
    local cctx = tlsrekey.context { mode = "client", cafile = cpath }
    local c, s = core.pair { client_ctx = cctx, server_ctx = sctx, server_hostname = "localhost" }
    assert.equal("x", H.exchange(c, s, "x"))
  end)

  it("server_from_pem_strings", function()
    local sctx, cert = server_ctx()
    local cctx = tlsrekey.context { mode = "client", cafile = cert }
    local c = core.pair { client_ctx = cctx, server_ctx = sctx, server_hostname = "localhost" }
    local info = c:peer_certificate()
    assert.truthy(info.subject:find("CN=localhost", 1, true), info.subject)
  end)

  it("missing_certificate_file_is_an_argument_error", function()
    local msg = H.bad_argument(1, "context", tlsrekey.context,
                               { mode = "server", cert = "/nonexistent/cert.pem" })
    assert.truthy(msg:find("'cert'", 1, true), msg)
  end)

  it("key_not_matching_the_certificate_is_an_argument_error", function()
    local cert = tlsrekey.make_test_cert()
    local _, other_key = tlsrekey.make_test_cert()
    local msg = H.bad_argument(1, "context", tlsrekey.context,
                               { mode = "server", cert = cert, key = other_key })
    assert.truthy(msg:find("'key'", 1, true), msg)
  end)

  it("a_context_whose_handshakes_could_only_fail_is_refused_naming_the_option", function()
    local cert, key = tlsrekey.make_test_cert()
    -- a server without its certificate's key, or without any: refused here, not at
    -- every handshake later as "no shared cipher"
    local msg = H.bad_argument(1, "context", tlsrekey.context, { mode = "server", cert = cert })
    assert.truthy(msg:find("option 'key'", 1, true), msg)
    msg = H.bad_argument(1, "context", tlsrekey.context, { mode = "server" })
    assert.truthy(msg:find("option 'cert'", 1, true), msg)
    msg = H.bad_argument(1, "context", tlsrekey.context,
                         { mode = "server", protocol = "dtls", key = key })
    assert.truthy(msg:find("option 'cert'", 1, true), msg)
    -- a client key without its certificate, a client certificate without its key
    msg = H.bad_argument(1, "context", tlsrekey.context,
                         { mode = "client", cafile = cert, key = key })
    assert.truthy(msg:find("option 'cert'", 1, true), msg)
    msg = H.bad_argument(1, "context", tlsrekey.context,
                         { mode = "client", cafile = cert, cert = cert })
    assert.truthy(msg:find("option 'key'", 1, true), msg)
    -- the key may come in the certificate's own PEM, as in Python
    local sctx = tlsrekey.context { mode = "server", cert = cert .. key }
    local c, s = core.pair { client_ctx = tlsrekey.context { mode = "client", cafile = cert },
                             server_ctx = sctx, server_hostname = "localhost" }
    assert.equal("x", H.exchange(c, s, "x"))
  end)

  -- SNI and certificate names are ASCII: Lua has no IDNA codec, so a name that is
  -- not ASCII is an argument error naming server_hostname (pair() used to blame its
  -- test certificate's common_name); its IDNA form works.
  it("an_internationalized_server_hostname_goes_in_its_idna_form", function()
    local err = H.bad_argument(1, "pair", tlsrekey.pair, { server_hostname = "bücher.example" })
    assert.truthy(err:find("option 'server_hostname'", 1, true), err)
    local cert, key = tlsrekey.make_test_cert("xn--bcher-kva.example")
    local cctx = tlsrekey.context { mode = "client", cafile = cert }
    err = H.bad_argument(1, "memory", function()
      cctx:memory { server_hostname = "bücher.example" }
    end)
    assert.truthy(err:find("server_hostname", 1, true) and err:find("IDNA", 1, true), err)
    err = H.bad_argument(1, "pair", tlsrekey.pair,
                         { cert = cert, key = key, server_hostname = "bücher.example" })
    assert.truthy(err:find("server_hostname", 1, true), err)
    local c, s = tlsrekey.pair { cert = cert, key = key,
                                 server_hostname = "xn--bcher-kva.example" }
    assert.equal("x", H.exchange(c, s, "x"))
    c = tlsrekey.pair { server_hostname = "xn--bcher-kva.example" }
    assert.truthy(c:peer_certificate().san:find("xn--bcher-kva.example", 1, true))
  end)

  it("client_verifies_against_the_system_store_by_default", function()
    local sctx = server_ctx()
    local cctx = tlsrekey.context { mode = "client" }
    H.raises("verify", function()
      core.pair { client_ctx = cctx, server_ctx = sctx, server_hostname = "localhost" }
    end)
  end)

  it("client_without_verification_accepts_any_server", function()
    local sctx = server_ctx()
    local cctx = tlsrekey.context { mode = "client", verify = false }
    local c, s = core.pair { client_ctx = cctx, server_ctx = sctx } -- no host name needed either
    assert.equal("x", H.exchange(c, s, "x"))
  end)

  it("check_hostname_false_accepts_another_name", function()
    local sctx, cert = server_ctx()
    local cctx = tlsrekey.context { mode = "client", cafile = cert, check_hostname = false }
    local c, s = core.pair { client_ctx = cctx, server_ctx = sctx, server_hostname = "example.org" }
    assert.equal("x", H.exchange(c, s, "x"))
  end)

  it("alpn_is_negotiated", function()
    local c, s = tlsrekey.pair { alpn = { "h2", "http/1.1" } }
    assert.equal("h2", c:alpn())
    assert.equal("h2", s:alpn())
    local c2 = tlsrekey.pair()
    assert.is_nil(c2:alpn())
  end)

  it("versions_and_ciphers_are_honoured", function()
    local c = tlsrekey.pair { ciphersuites = "TLS_CHACHA20_POLY1305_SHA256" }
    assert.equal("TLS_CHACHA20_POLY1305_SHA256", c:cipher())
    local c12 = tlsrekey.pair { max_version = "TLSv1.2", ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256" }
    assert.equal("TLSv1.2", c12:version())
    assert.equal("ECDHE-ECDSA-AES128-GCM-SHA256", c12:cipher())
    local c13 = tlsrekey.pair { min_version = "TLSv1.3" }
    assert.equal("TLSv1.3", c13:version())
    local cg = tlsrekey.pair { groups = "X25519" }
    assert.equal("TLSv1.3", cg:version())
    assert.equal("x25519", cg:group())
  end)

  it("group_names_the_key_exchange_of_each_version", function()
    local c, s = tlsrekey.pair { groups = "P-256" }
    assert.equal("secp256r1", c:group())
    assert.equal("secp256r1", s:group())
    -- TLS 1.2 ECDHE: the certificate's curve must stay usable for its signature
    local c12, s12 = tlsrekey.pair { max_version = "TLSv1.2", groups = "P-384:P-256" }
    assert.equal("TLSv1.2", c12:version())
    assert.equal("secp384r1", c12:group())
    assert.equal("secp384r1", s12:group())
    local cctx = tlsrekey.pair_contexts()
    assert.is_nil(cctx:memory { server_hostname = "localhost" }:group())
  end)

  it("pair_joins_existing_contexts", function()
    local cctx, sctx = tlsrekey.pair_contexts()
    for i = 1, 3 do
      local c, s = tlsrekey.pair { client_ctx = cctx, server_ctx = sctx }
      assert.is_string(c:group()) -- OpenSSL's default: x25519, X25519MLKEM768 on 3.5
      assert.equal(s:group(), c:group())
      c:key_update("requested")
      c:write("m" .. i)
      assert.equal("m" .. i, s:read())
      s:write("ok")
      assert.equal("ok", c:read())
      assert.equal(1, c:stats().key_updates_sent)
      assert.equal(1, c:stats().key_updates_received)
      assert.equal(1, s:stats().key_updates_received)
    end
    -- the server name is checked against the certificate as usual
    local ok, err = pcall(tlsrekey.pair, { client_ctx = cctx, server_ctx = sctx,
                                           server_hostname = "elsewhere.example" })
    assert.is_false(ok)
    assert.equal("verify", err.code)
  end)

  it("pair_with_contexts_rejects_bad_input", function()
    local cctx, sctx = tlsrekey.pair_contexts()
    local err = H.bad_argument(1, "pair", tlsrekey.pair, { client_ctx = cctx })
    assert.truthy(err:find("'server_ctx'", 1, true), err)
    err = H.bad_argument(1, "pair", tlsrekey.pair, { client_ctx = "ctx", server_ctx = sctx })
    assert.truthy(err:find("'client_ctx' must be a tlsrekey.context, got string", 1, true), err)
    err = H.bad_argument(1, "pair", tlsrekey.pair, { client_ctx = sctx, server_ctx = cctx })
    assert.truthy(err:find("must be a client context, got a server context", 1, true), err)
    err = H.bad_argument(1, "pair", tlsrekey.pair,
                         { client_ctx = cctx, server_ctx = sctx, groups = "P-256" })
    assert.truthy(err:find("'groups' cannot be combined", 1, true), err)
    H.bad_argument(1, "pair", tlsrekey.pair,
                   { client_ctx = cctx, server_ctx = sctx, server_hostname = 1 })
    H.bad_argument(1, "context", tlsrekey.context, { mode = "client", ciphersuites = "NOPE" })
    -- a TLS context with a DTLS one: argument #1 of pair, naming the two options
    local dtls_sctx = select(2, tlsrekey.pair_contexts { dtls = true })
    err = H.bad_argument(1, "pair", tlsrekey.pair, { client_ctx = cctx, server_ctx = dtls_sctx })
    assert.truthy(err:find("client_ctx", 1, true) and err:find("server_ctx", 1, true), err)
  end)

  local BAD_PEM = "-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n"
  for _, option in ipairs { "cert", "cafile", "client_cert", "client_key" } do
    -- pair() spreads its options over two contexts (cert also becomes the client's
    -- cafile, client_cert the server's): an error names the option the caller wrote
    it("pair_errors_name_the_pairs_own_option " .. option, function()
      local cert, key = tlsrekey.make_test_cert()
      local given = ({ cert = { cert = BAD_PEM, key = key },
                       cafile = { cafile = BAD_PEM },
                       client_cert = { client_cert = BAD_PEM, client_key = key },
                       client_key = { client_cert = cert, client_key = BAD_PEM } })[option]
      local err = H.bad_argument(1, "pair", tlsrekey.pair, given)
      assert.truthy(err:find("(option '" .. option .. "'", 1, true), err)
      if option == "client_key" then -- a key alone: its certificate is what is missing
        err = H.bad_argument(1, "pair", tlsrekey.pair, { client_key = key })
        assert.truthy(err:find("(option 'client_cert'", 1, true), err)
      end
    end)
  end

  it("keylog_file_gets_the_secrets", function()
    local path = H.tmpname(".keys")
    local c, s = tlsrekey.pair { keylog = path }
    H.exchange(c, s, "x")
    local text = H.read_file(path)
    assert.truthy(text:find("CLIENT_HANDSHAKE_TRAFFIC_SECRET", 1, true), text)
  end)

  it("keylog_file_is_created_readable_by_its_owner_only", function()
    local path = H.tmpname(".keys")
    local c, s = tlsrekey.pair { keylog = path }
    H.exchange(c, s, "x")
    local p = assert(io.popen("stat -c %a " .. H.shell_quote(path)))
    local mode = p:read("l")
    p:close()
    assert.equal("600", mode) -- it holds traffic secrets
  end)

  it("tickets_cache_and_buffers_options_are_accepted", function()
    local c, s = tlsrekey.pair { num_tickets = 0, session_cache = false, release_buffers = true }
    assert.equal("x", H.exchange(c, s, "x"))
    assert.equal("y", H.exchange(s, c, "y"))
  end)

  it("server_requiring_a_client_certificate", function()
    local ccert, ckey = tlsrekey.make_test_cert("client.example")
    local sctx, scert = server_ctx { verify = true, cafile = ccert }
    local with = tlsrekey.context { mode = "client", cafile = scert, cert = ccert, key = ckey }
    local c, s = core.pair { client_ctx = with, server_ctx = sctx, server_hostname = "localhost" }
    assert.equal("x", H.exchange(c, s, "x"))
    local info = s:peer_certificate()
    assert.truthy(info.subject:find("client.example", 1, true), info.subject)
    local without = tlsrekey.context { mode = "client", cafile = scert }
    local err = H.error_of(function()
      local c2, s2 = core.pair { client_ctx = without, server_ctx = sctx,
                                 server_hostname = "localhost" }
      H.exchange(c2, s2, "x") -- TLS 1.3: the refusal may come after the client's Finished
    end)
    assert.truthy(tlsrekey.is_error(err), tostring(err))
  end)

  it("server_optional_client_certificate", function()
    local sctx, scert = server_ctx { verify = "optional", cafile = (tlsrekey.make_test_cert()) }
    local cctx = tlsrekey.context { mode = "client", cafile = scert }
    local c, s = core.pair { client_ctx = cctx, server_ctx = sctx, server_hostname = "localhost" }
    assert.equal("x", H.exchange(c, s, "x"))
    assert.is_nil(s:peer_certificate())
  end)

  local function client_cert_contexts(server_extra)
    local ccert, ckey = tlsrekey.make_test_cert("client.example")
    local extra = { cafile = ccert, max_version = "TLSv1.2" }
    for k, v in pairs(server_extra or {}) do extra[k] = v end
    local sctx, scert = server_ctx(extra)
    local cctx = tlsrekey.context { mode = "client", cafile = scert, cert = ccert, key = ckey }
    return core.pair { client_ctx = cctx, server_ctx = sctx, server_hostname = "localhost" }
  end

  it("set_verify_client_asks_for_a_certificate_in_the_next_handshake", function()
    local c, s = client_cert_contexts { allow_client_renegotiation = true }
    assert.is_nil(s:peer_certificate())
    assert.is_true(s:set_verify_client(true, true))
    c:renegotiate() -- a full handshake: the server asks for the certificate
    H.exchange(c, s, "x")
    H.exchange(s, c, "y")
    assert.equal(1, s:stats().renegotiations)
    local info = s:peer_certificate()
    assert.truthy(info and info.subject:find("client.example", 1, true))
    H.raises("state", function() c:set_verify_client() end) -- servers only
  end)

  it("set_verify_client_then_server_renegotiate_gets_a_certificate", function()
    -- a resumed handshake asks for no certificate and OpenSSL clients resume on a
    -- HelloRequest: the core makes the next handshake full once asked
    local ccert, ckey = tlsrekey.make_test_cert("client.example")
    local c, s = tlsrekey.pair { client_cert = ccert, client_key = ckey,
                                 max_version = "TLSv1.2" }
    assert.is_nil(s:peer_certificate())
    s:set_verify_client(true, true)
    s:renegotiate()
    assert.equal("x", H.exchange(s, c, "x"))
    assert.equal("y", H.exchange(c, s, "y"))
    assert.is_false(s:renegotiate_pending())
    assert.is_false(c:session_reused())
    assert.truthy(s:peer_certificate().subject:find("client.example", 1, true))
  end)
end)

describe("pair options", function()
  after_each(H.cleanup)

  it("pair_with_a_client_certificate", function()
    local ccert, ckey = tlsrekey.make_test_cert("client.example")
    local c, s = tlsrekey.pair { client_cert = ccert, client_key = ckey, verify_client = true }
    assert.equal("x", H.exchange(c, s, "x"))
    assert.truthy(s:peer_certificate().subject:find("client.example", 1, true))
  end)

  it("pair_with_another_server_name", function()
    local c = tlsrekey.pair { server_hostname = "example.org" }
    assert.truthy(c:peer_certificate().subject:find("example.org", 1, true))
  end)

  it("pair_key_without_cert_is_an_error", function()
    local _, key = tlsrekey.make_test_cert()
    H.bad_argument(1, "pair", tlsrekey.pair, { key = key })
  end)
end)
