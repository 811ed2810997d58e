-- `hoist test -j N`: each file in its own child process, at most N at once, each file's output
-- printed whole, files declaring the same shared resource never at the same time, a summary,
-- exit 1 when a file failed, and SIGTERM to the runner stops its children. The fixtures are
-- written to a temp folder (the runner's own scan of tests/lua must not find them).
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

-- A fixture: appends "start NAME" and "end NAME" to the shared log around `body`, prints
-- lines tagged with its name with pauses between them (so two files at once would interleave).
local function fixture(dir, name, header, body, more)
  support.write(("%s/%s_test.lua"):format(dir, name), (header or "") .. ([[
local t = require "hoist.test"
local LOG, NAME = %q, %q
local function note(what)
  local f = assert(io.open(LOG, "a"))
  f:write(what .. " " .. NAME .. "\n")
  f:close()
end
local function seen(what)
  local f = io.open(LOG, "r")
  local text = f and f:read("*a") or ""
  if f then f:close() end
  return text:find(what, 1, true) ~= nil
end
local function chatter(n)
  for i = 1, n do
    print("line-" .. NAME .. " " .. i)
    io.stderr:write("line-" .. NAME .. " on stderr " .. i .. "\n")
    hoist.sleep(0.05)
  end
end
t.case("first", function()
  note("start")
  chatter(4)
  %s
  note("end")
end)
%s
]]):format(dir .. "/log", name, body or "", more or ""))
end

local function runner(dir, args, opts)
  local argv = { "test" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv[#argv + 1] = dir
  return support.run_hoist(argv, opts or { timeout = 300 })
end

t.case("-j 2: whole outputs, a summary, the exclusive pair apart, exit 1 on a failure", function()
  local dir = support.tmpdir("hoist-runner")
  local shares = "-- a header comment first\n-- hoist.test shares: fixture-lock, other\n\n"
  -- excl_a holds its resource until `fail` (the next file free to run) has started: so the
  -- two workers do run at once, and excl_b, sorted before `fail`, had to wait its turn
  fixture(dir, "excl_a", shares, [[
  for _ = 1, 600 do if seen("start fail") then break end hoist.sleep(0.05) end
  t.ok(seen("start fail"), "fail started while excl_a ran")]])
  fixture(dir, "excl_b", "-- hoist.test shares: fixture-lock\n")
  fixture(dir, "fail", nil, nil, [[
t.case("second fails", function() print("line-fail about to fail"); t.eq(1, 2, "one is two") end)
t.case("third", function() t.skip("skipped on purpose") end)]])
  fixture(dir, "pass", nil, "chatter(2)")
  local r = runner(dir, { "-j", "2" })
  local out = r.stdout
  t.eq(r.code, 1, "a failed file fails the run: " .. out .. r.stderr)

  -- every tagged line sits under its own file's header
  local current, headers = nil, {}
  for line in out:gmatch("[^\n]+") do
    local verdict, file = line:match("^=== (%S+) (%S+) %(")
    if file then
      current = file:match("([%w_]+)_test%.lua$")
      headers[current] = verdict
    else
      local tag = line:match("^line%-([%w_]+)")
      if tag then t.eq(tag, current, "line '" .. line .. "' is printed under its own file") end
    end
  end
  t.eq(headers, { excl_a = "ok", excl_b = "ok", fail = "FAIL", pass = "ok" })
  t.match(out, "line%-excl_a on stderr 4", "stderr is kept too")
  t.match(out, "FAIL [^\n]*fail_test%.lua: second fails\n[^\n]*one is two")

  -- the summary: slowest files, the failed files again, totals last
  t.match(out, "slowest files:\n +[%d.]+s [^\n]+_test%.lua\n")
  t.match(out, "failed files:\n  [^\n]*/fail_test%.lua\n")
  -- and each failed case with its message, at the very end (a CI log cut to its tail)
  t.match(out, "failed cases:\n  FAIL [^\n]*fail_test%.lua: second fails\n  [^\n]*one is two[^\n]*\n.-\n4 passed, 1 failed")
  t.match(out, "\n4 passed, 1 failed, 1 skipped %(4 files, 1 failed; [%d.]+s with %-j 2%)\n$")

  -- the exclusive pair never overlapped; `fail` ran beside excl_a
  local log = support.must_read(dir .. "/log")
  local open = {}
  for what, name in log:gmatch("(%a+) ([%w_]+)\n") do
    if what == "start" then
      if name:find("^excl") then t.ok(not (open.excl_a or open.excl_b), "excl_a and excl_b overlap:\n" .. log) end
      open[name] = true
    else
      open[name] = nil
    end
  end
  -- (which child writes its start first is the scheduler's choice: only the overlap is ours)
  t.ok(log:find("start fail\n", 1, true) < log:find("end excl_a\n", 1, true), "fail started before excl_a ended:\n" .. log)
  hoist.exec { "rm", "-rf", dir }
end, { timeout = 300 })

t.case("a file declaring `hoist.test slow` starts with the first, the rest in name order", function()
  local dir = support.tmpdir("hoist-runner")
  fixture(dir, "a_quick")
  fixture(dir, "b_quick")
  fixture(dir, "z_long", "-- the suite's longest\n-- hoist.test slow\n")
  local r = runner(dir, { "-j", "2" })
  t.eq(r.code, 0, r.stdout .. r.stderr)
  local starts = {}
  for name in support.must_read(dir .. "/log"):gmatch("start ([%w_]+)\n") do starts[#starts + 1] = name end
  -- two slots: z_long (slow) and a_quick (first by name) start at once; b_quick waits for a slot
  t.eq(starts[3], "b_quick", "b_quick waited, z_long did not: " .. table.concat(starts, ", "))
  hoist.exec { "rm", "-rf", dir }
end, { timeout = 120 })

t.case("-j 1 runs the files in this process, one after another, as before", function()
  local dir = support.tmpdir("hoist-runner")
  fixture(dir, "one")
  fixture(dir, "two")
  local r = runner(dir, {})
  t.eq(r.code, 0, r.stdout .. r.stderr)
  t.no_match(r.stdout, "===")
  t.match(r.stdout, "ok   [^\n]*one_test%.lua: first")
  t.match(r.stdout, "\n2 passed, 0 failed, 0 skipped\n$")
  t.eq(support.must_read(dir .. "/log"), "start one\nend one\nstart two\nend two\n")
  hoist.exec { "rm", "-rf", dir }
end, { timeout = 120 })

t.case("SIGTERM to the runner stops the files it runs", function()
  local dir = support.tmpdir("hoist-runner")
  -- each child writes its pid, then waits far longer than the test
  for _, name in ipairs { "long_a", "long_b" } do
    fixture(dir, name, nil, [[
  local stat = assert(io.open("/proc/self/stat"))
  note("pid " .. stat:read("*l"):match("^%d+"))
  stat:close()
  hoist.sleep(600)]])
  end
  local task = hoist.spawn(hoist.exec, { "sh", "-c", 'echo $$ > "$1/runner.pid"; exec "$2" test -j 2 "$1"', "sh",
                                         dir, support.hoist_bin(), timeout = 300 })
  local pids
  for _ = 1, 600 do
    pids = {}
    for pid in (support.read(dir .. "/log") or ""):gmatch("pid (%d+)") do pids[#pids + 1] = pid end
    if #pids == 2 then break end
    hoist.sleep(0.05)
  end
  t.eq(#pids, 2, "both files started")
  hoist.exec { "kill", "-TERM", support.must_read(dir .. "/runner.pid"):match("%d+"), check = true }
  local r = task:wait()
  t.eq(r.code, 130, "the runner was cancelled: " .. r.stdout .. r.stderr)
  for _, pid in ipairs(pids) do t.ok(not support.exists("/proc/" .. pid .. "/stat"), "child " .. pid .. " is gone") end
  hoist.exec { "rm", "-rf", dir }
end, { timeout = 300 })
