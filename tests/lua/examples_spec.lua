-- examples/*.lua: each runs to completion by itself (exit status 0) within a bound,
-- with this test run's LUA_PATH/LUA_CPATH (and sanitizer environment), so it uses the
-- module under test. The Python examples are run by tests/python/test_examples.py.
local H = require "helpers"

local LIMIT = 60 -- seconds per example; each finishes in well under a few seconds

local function examples()
  local list = {}
  local p = assert(io.popen("ls examples/*.lua 2>/dev/null"))
  for line in p:lines() do list[#list + 1] = line end
  p:close()
  table.sort(list)
  return list
end

--- The lua interpreter running these specs (busted runs under it).
local function interpreter()
  local i = -1
  while arg[i - 1] do i = i - 1 end
  return arg[i] or "lua5.4"
end

describe("examples/*.lua", function()
  after_each(H.cleanup)

  it("there_are_lua_examples", function()
    assert.is_true(#examples() >= 3, "examples/*.lua not found (run from the source root)")
  end)

  for _, path in ipairs(examples()) do
    it("runs " .. path, function()
      local out = H.tmpname(".out")
      -- `timeout` bounds the run; the example's own child server exits with it.
      local cmd = ("timeout %d %s %s > %s 2>&1"):format(LIMIT, H.shell_quote(interpreter()),
                                                       H.shell_quote(path), out)
      local ok, how, code = os.execute(cmd)
      local text = H.read_file(out)
      assert(ok, ("%s failed (%s %s):\n%s"):format(path, tostring(how), tostring(code), text))
      assert(#text > 0, path .. " printed nothing")
    end)
  end
end)
