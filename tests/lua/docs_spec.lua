-- docs/api-lua.md documents every public name, and nothing that is not there: the
-- functions and constants of tlsrekey, the methods of contexts, connections and
-- buffers, the fields of error objects, the functions of tlsrekey_compat and the methods of its
-- wrapped objects, one heading each; and the stats keys in the table between the
-- <!-- names: stats --> markers. A new method fails this spec until it is documented,
-- a removed one until its heading goes. (tests/python/test_docs.py does the same for
-- Python.)
local H = require "helpers"
local tlsrekey = H.tlsrekey
local compat = require "tlsrekey_compat"

local API = "docs/api-lua.md"

-- heading prefix -> the group of names it documents
local GROUPS = {
  ["tlsrekey."] = "module", ["ctx:"] = "context", ["conn:"] = "connection", ["buf:"] = "buffer",
  ["err."] = "error", ["tlsrekey_compat."] = "compat", ["wrapped:"] = "wrapped",
}

local function set_of(t, pred)
  local s = {}
  for k in pairs(t) do
    if type(k) == "string" and not k:find("^_") and (not pred or pred(k)) then s[k] = true end
  end
  return s
end

local function difference(a, b)
  local out = {}
  for k in pairs(a) do if not b[k] then out[#out + 1] = k end end
  table.sort(out)
  return out
end

local function documented()
  local text = H.read_file(API)
  assert(#text > 0, API .. " not found (run from the source root)")
  local groups, seen = {}, {}
  for _, g in pairs(GROUPS) do groups[g] = {} end
  for line in text:gmatch("[^\n]+") do
    local heading = line:match("^#+%s+`?([%w_.:]+)")
    if heading then
      for prefix, group in pairs(GROUPS) do
        if heading:sub(1, #prefix) == prefix then
          local name = heading:sub(#prefix + 1)
          if name ~= "" and not name:find("[.:]") then
            assert(not seen[heading], heading .. " is documented twice")
            seen[heading] = true
            groups[group][name] = true
          end
        end
      end
    end
  end
  return groups, text
end

local function actual()
  local cctx, sctx, hostname = tlsrekey.pair_contexts()
  local c = cctx:memory { server_hostname = hostname }
  local errors = {}
  -- error objects: a plain one, and one with OpenSSL's library and queue
  errors[1] = H.error_of(function() c:key_update() end)
  errors[2] = H.error_of(function()
    tlsrekey.pair { cafile = (tlsrekey.make_test_cert("localhost")) }
  end)
  -- and one from the peer's alert (the field `alert` is there only then)
  local ucctx = tlsrekey.context { mode = "client", cafile = (tlsrekey.make_test_cert()) }
  local uc, us = ucctx:memory { server_hostname = "localhost" }, sctx:memory()
  H.error_of(H.memory_handshake, uc, us)
  us:feed(uc:drain())
  errors[3] = H.error_of(function() us:do_handshake() end)
  uc:close()
  us:close()
  local fields = {}
  for _, e in ipairs(errors) do
    assert(tlsrekey.is_error(e), tostring(e))
    for k in pairs(e) do fields[k] = true end
  end
  local names = {
    module = set_of(tlsrekey),
    context = set_of(getmetatable(sctx).__index),
    connection = set_of(getmetatable(c).__index),
    buffer = set_of(getmetatable(tlsrekey.buffer(1)).__index),
    error = fields,
    compat = set_of(compat),
    wrapped = set_of(compat.methods),
  }
  local stats = set_of(c:stats())
  c:close()
  return names, stats
end

describe("docs/api-lua.md", function()
  after_each(H.cleanup)

  it("documents_every_public_name", function()
    local docs = documented()
    local names = actual()
    for group, set in pairs(names) do
      local missing = difference(set, docs[group])
      assert(#missing == 0, ("%s names missing from %s: %s"):format(group, API,
                                                                  table.concat(missing, ", ")))
    end
  end)

  it("documents_no_name_that_does_not_exist", function()
    local docs = documented()
    local names = actual()
    for group, set in pairs(docs) do
      local stale = difference(set, names[group])
      assert(#stale == 0, ("%s names in %s that do not exist: %s"):format(group, API,
                                                                         table.concat(stale, ", ")))
    end
  end)

  it("lists_exactly_the_stats_keys", function()
    local _, text = documented()
    local body = text:match("<!%-%- names: stats %-%->\n(.-)<!%-%- /names %-%->")
    assert(body, "no stats table in " .. API)
    local listed = {}
    for name in body:gmatch("\n| `([%w_]+)`") do listed[name] = true end
    for name in body:gmatch("^| `([%w_]+)`") do listed[name] = true end
    local _, stats = actual()
    assert.same({}, difference(stats, listed))
    assert.same({}, difference(listed, stats))
  end)
end)
