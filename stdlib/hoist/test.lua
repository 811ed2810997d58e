--- hoist.test: a small test runner for Lua tests, run by the engine itself
--- (`hoist test tests/lua`). Tests are registered with `case` or, where cases are alike,
--- with `cases` and a table.
local M = {}

local registered = {}

--- Registers one test.
---@param name string
---@param fn fun()
---@param opts? {timeout?: number, skip?: string|boolean}
function M.case(name, fn, opts)
  registered[#registered + 1] = { name = name, fn = fn, opts = opts or {} }
end

--- Registers one test per row: fn(row) runs with each row of `rows`; a row's `name` field
--- (or its index) names it.
---@param name string
---@param rows table[]
---@param fn fun(row: table)
function M.cases(name, rows, fn)
  for i, row in ipairs(rows) do
    M.case(("%s [%s]"):format(name, row.name or i), function() fn(row) end)
  end
end

local function fail(msg, level) error("assertion failed: " .. msg, (level or 1) + 2) end

local function show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) == "table" and (not getmetatable(v) or getmetatable(v).__jsontype) then -- plain or decoded
    local ok, text = pcall(hoist.json.encode, v)
    if ok then return text end
  end
  return tostring(v)
end

local function deep_eq(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do if not deep_eq(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
M.deep_eq = deep_eq

--- Asserts deep equality.
function M.eq(actual, expected, msg)
  if not deep_eq(actual, expected) then
    fail(("%sexpected %s, got %s"):format(msg and msg .. ": " or "", show(expected), show(actual)))
  end
end

--- Asserts that v is truthy.
function M.ok(v, msg)
  if not v then fail(msg or ("expected a true value, got " .. show(v))) end
  return v
end

--- Asserts that text matches a Lua pattern.
function M.match(text, pattern, msg)
  if type(text) ~= "string" or not text:find(pattern) then
    fail(("%s%s does not match %q"):format(msg and msg .. ": " or "", show(text), pattern))
  end
end

--- Asserts that text does not contain the plain string.
function M.no_match(text, plain, msg)
  if type(text) == "string" and text:find(plain, 1, true) then
    fail(("%sfound %q where it must not be"):format(msg and msg .. ": " or "", plain))
  end
end

--- Asserts that fn raises; `code` checks a hoist error's code, `pattern` its text.
---@return any err
function M.raises(fn, code, pattern)
  local ok, err = pcall(fn)
  if ok then fail("expected an error" .. (code and (" with code " .. code) or "")) end
  if code and not (type(err) == "table" and err.code == code) then
    fail(("expected error code %s, got %s"):format(code, show(tostring(err))))
  end
  if pattern and not tostring(err):find(pattern) then
    fail(("error %s does not match %q"):format(show(tostring(err)), pattern))
  end
  return err
end

--- Skips the running test with a reason (reported loudly).
function M.skip(reason) error({ hoist_test_skip = reason or "skipped" }, 0) end

local function list_files(paths)
  local files = {}
  for _, p in ipairs(paths) do
    if p:match("%.lua$") then
      files[#files + 1] = p
    else
      local r = hoist.exec { "find", p, "-name", "*_test.lua", "-o", "-name", "test_*.lua" }
      for line in r.stdout:gmatch("[^\n]+") do files[#files + 1] = line end
    end
  end
  table.sort(files)
  return files
end

--- Runs the test files under `paths`; prints one line per test and "N passed, M failed".
---@param paths string[]
---@param opts? {filter?: string}
---@return integer failed
function M.main(paths, opts)
  opts = opts or {}
  local passed, failed, skipped = 0, 0, 0
  for _, file in ipairs(list_files(paths)) do
    registered = {}
    local chunk, err = loadfile(file)
    if not chunk then
      print("FAIL " .. file .. ": " .. err)
      failed = failed + 1
    else
      local ok, load_err = pcall(chunk)
      if not ok then
        print("FAIL " .. file .. ": " .. tostring(load_err))
        failed = failed + 1
      end
    end
    for _, t in ipairs(registered) do
      local full = file .. ": " .. t.name
      if opts.filter and not full:find(opts.filter, 1, true) then
        -- filtered out
      elseif t.opts.skip then
        skipped = skipped + 1
        print(("SKIP %s (%s)"):format(full, tostring(t.opts.skip)))
      else
        local started = hoist.now()
        local ok, err = pcall(hoist.timeout, t.opts.timeout or 120, t.fn)
        local took = hoist.now() - started
        if ok then
          passed = passed + 1
          print(("ok   %s (%.2fs)"):format(full, took))
        elseif type(err) == "table" and err.hoist_test_skip then
          skipped = skipped + 1
          print(("SKIP %s: %s"):format(full, err.hoist_test_skip))
        else
          failed = failed + 1
          local text = tostring(err)
          if type(err) == "table" and err.traceback then text = text .. "\n" .. err.traceback end
          print(("FAIL %s\n     %s"):format(full, text:gsub("\n", "\n     ")))
        end
      end
    end
  end
  print(("%d passed, %d failed, %d skipped"):format(passed, failed, skipped))
  return failed
end

return M
