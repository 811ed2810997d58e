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
  -- HOIST_TEST_MATCH=text runs only the cases whose name has `text` (plain, not a pattern)
  local only = os.getenv("HOIST_TEST_MATCH")
  if only and only ~= "" and not name:find(only, 1, true) then return end
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

-- What a test file declares in its leading comment block (read without running the file):
-- the exclusive resources it shares (`-- hoist.test shares: docker-images, kube-emulator`) and
-- whether it is slow (`-- hoist.test slow`: started before the others, so that the longest
-- files do not end the run alone).
local function header_of(file)
  local h, f = { shares = {}, slow = false }, io.open(file, "r")
  if not f then return h end
  for line in f:lines() do
    if not (line:match("^%s*%-%-") or line:match("^%s*$") or line:match("^#!")) then break end
    local list = line:match("^%s*%-%-+%s*hoist%.test%s+shares:%s*(.-)%s*$")
    if list then
      for name in list:gmatch("[^,%s]+") do h.shares[#h.shares + 1] = name end
    end
    if line:match("^%s*%-%-+%s*hoist%.test%s+slow%s*$") then h.slow = true end
  end
  f:close()
  return h
end

-- Runs one file in its own `hoist test FILE`; its output (stderr merged into stdout, so a
-- log line stays next to the test that wrote it) is kept until the file ends.
local function run_child(argv, file)
  local cmd = { "sh", "-c", 'exec "$@" 2>&1', "hoist-test" }
  for _, a in ipairs(argv) do cmd[#cmd + 1] = a end
  cmd[#cmd + 1] = file
  local r = hoist.exec(cmd)
  local passed, failed, skipped = r.stdout:match("(%d+) passed, (%d+) failed, (%d+) skipped%s*$")
  local counts = { passed = tonumber(passed) or 0, failed = tonumber(failed) or 0, skipped = tonumber(skipped) or 0 }
  -- a child that died before its summary (or exited non-zero without a failed test) failed once
  if r.code ~= 0 and counts.failed == 0 or not passed then counts.failed = counts.failed + 1 end
  return { file = file, output = r.stdout, code = r.code, took = r.duration, counts = counts }
end

local function print_file(res)
  local verdict = res.counts.failed > 0 and "FAIL" or "ok"
  io.stdout:write(("=== %s %s (%.1fs)\n%s"):format(verdict, res.file, res.took, res.output))
  if res.output ~= "" and not res.output:find("\n$") then io.stdout:write("\n") end
  io.stdout:flush()
end

-- A failed file's FAIL blocks (the line and its indented message, 40 lines at most each), or
-- its last lines when it died without one.
local function failures_of(res)
  local out, lines, taking = {}, {}, 0
  for line in (res.output .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
  for _, line in ipairs(lines) do
    if line:match("^FAIL ") then
      out[#out + 1], taking = "  " .. line, 40
    elseif taking > 0 and line:match("^     ") then
      out[#out + 1], taking = "  " .. line, taking - 1
    else
      taking = 0
    end
  end
  if #out == 0 then
    out[1] = ("  %s exited %s before its summary; its last lines:"):format(res.file, tostring(res.code))
    for i = math.max(1, #lines - 20), #lines do out[#out + 1] = "    " .. lines[i] end
  end
  return table.concat(out, "\n")
end

local function print_summary(results, jobs, took)
  local total, failed_files = { passed = 0, failed = 0, skipped = 0 }, {}
  for _, res in ipairs(results) do
    for k, v in pairs(res.counts) do total[k] = total[k] + v end
    if res.counts.failed > 0 then failed_files[#failed_files + 1] = res.file end
  end
  local by_time = { unpack(results) }
  table.sort(by_time, function(a, b) return a.took > b.took end)
  print("slowest files:")
  for i = 1, math.min(5, #by_time) do print(("  %7.1fs %s"):format(by_time[i].took, by_time[i].file)) end
  if #failed_files > 0 then
    table.sort(failed_files)
    print("failed files:")
    for _, file in ipairs(failed_files) do print("  " .. file) end
    -- again at the very end, each failed case and its message: a log cut to its tail (as CI
    -- shows it) still says what failed and why
    print("failed cases:")
    for _, res in ipairs(results) do
      if res.counts.failed > 0 then print(failures_of(res)) end
    end
  end
  print(("%d passed, %d failed, %d skipped (%d files, %d failed; %.1fs with -j %d)"):format(
    total.passed, total.failed, total.skipped, #results, #failed_files, took, jobs))
  return total.failed
end

-- `hoist test -j N`: every file in a child process, at most `jobs` at once, never two files
-- that share a resource at the same time.
local function run_concurrently(files, opts)
  local started, pending, held, results = hoist.now(), {}, {}, {}
  for i, file in ipairs(files) do
    local h = header_of(file)
    pending[i] = { file = file, shares = h.shares, slow = h.slow, order = i }
  end
  -- slow files first, each group in name order
  table.sort(pending, function(a, b)
    if a.slow ~= b.slow then return a.slow end
    return a.order < b.order
  end)
  local function take()
    for i, p in ipairs(pending) do
      local free = true
      for _, name in ipairs(p.shares) do free = free and not held[name] end
      if free then
        for _, name in ipairs(p.shares) do held[name] = true end
        return table.remove(pending, i)
      end
    end
  end
  local function worker()
    while #pending > 0 do
      local p = take()
      if p then
        local res = run_child(opts.argv, p.file)
        for _, name in ipairs(p.shares) do held[name] = nil end
        results[#results + 1] = res
        print_file(res)
      else
        hoist.sleep(0.1) -- every runnable file shares a resource with one that runs
      end
    end
  end
  local slots = {}
  for i = 1, math.min(opts.jobs, #files) do slots[i] = i end
  hoist.map(slots, worker, { limit = #slots })
  return print_summary(results, opts.jobs, hoist.now() - started)
end

--- Runs the test files under `paths`; prints one line per test and "N passed, M failed".
--- With `jobs` > 1 (and `argv`, the child command line `hoist test` gives), each file runs in
--- its own child process, at most `jobs` at once; files declaring the same shared resource
--- (`-- hoist.test shares: NAME, ...` at the top) never run at the same time, and files declaring
--- `-- hoist.test slow` start before the others.
---@param paths string[]
---@param opts? {filter?: string, jobs?: integer, argv?: string[]}
---@return integer failed
function M.main(paths, opts)
  opts = opts or {}
  local files = list_files(paths)
  if (opts.jobs or 1) > 1 and opts.argv then return run_concurrently(files, opts) end
  -- line by line, so a test's verdict keeps its place among the log lines on stderr
  io.stdout:setvbuf("line")
  -- LuaJIT starts every process with the same random sequence: without a seed, files run at
  -- once by -j would draw the same "unique" names (resource groups, namespaces, tags)
  local stat = io.open("/proc/self/stat", "r")
  local pid = stat and tonumber(stat:read("*l"):match("^%d+")) or 0
  if stat then stat:close() end
  math.randomseed(os.time() + pid * 1000 + math.floor(hoist.now() * 1e6) % 1000)
  local passed, failed, skipped = 0, 0, 0
  for _, file in ipairs(files) do
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
