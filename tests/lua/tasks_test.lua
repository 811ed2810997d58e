local t = require "hoist.test"

t.case("sleep yields to other tasks", function()
  local order = {}
  local a = hoist.spawn(function() hoist.sleep(0.05); order[#order + 1] = "a" end)
  local b = hoist.spawn(function() order[#order + 1] = "b" end)
  a:wait(); b:wait()
  t.eq(order, { "b", "a" })
end)

t.case("spawn returns results through wait", function()
  local task = hoist.spawn(function(x, y) return x + y, "two" end, 1, 2)
  local sum, two = task:wait()
  t.eq(sum, 3); t.eq(two, "two")
  t.eq(task:status(), "done")
end)

t.case("parallel runs concurrently and keeps order", function()
  local started = hoist.now()
  local a, b, c = hoist.parallel(
    function() hoist.sleep(0.2); return 1 end,
    function() hoist.sleep(0.2); return 2 end,
    function() hoist.sleep(0.2); return 3 end)
  t.eq({ a, b, c }, { 1, 2, 3 })
  t.ok(hoist.now() - started < 0.5, "three 0.2 s sleeps did not overlap")
end)

t.case("the first error cancels the others and is raised after they stop", function()
  local stopped = false
  local err = t.raises(function()
    hoist.parallel(
      function() hoist.sleep(0.01); hoist.error { code = "conflict", message = "first" } end,
      function()
        local ok, e = pcall(hoist.sleep, 10)
        stopped = not ok and e.code == "cancelled"
        error(e, 0)
      end)
  end, "conflict", "first")
  t.ok(stopped, "the sibling saw its cancellation before parallel returned")
end)

t.case("map honours the limit", function()
  local running, peak = 0, 0
  local out = hoist.map({ 1, 2, 3, 4, 5, 6 }, function(x)
    running = running + 1
    peak = math.max(peak, running)
    hoist.sleep(0.02)
    running = running - 1
    return x * 10
  end, { limit = 2 })
  t.eq(out, { 10, 20, 30, 40, 50, 60 })
  t.eq(peak, 2)
end)

t.case("timeout raises timeout and cancels the work", function()
  local cancelled = false
  t.raises(function()
    hoist.timeout(0.05, function()
      local ok, e = pcall(hoist.sleep, 5)
      cancelled = e and e.code == "cancelled"
    end)
  end, "timeout")
  t.ok(cancelled)
  t.eq(hoist.timeout(1, function() return "fast" end), "fast")
end)

t.case("cancel makes a waiting task fail with cancelled", function()
  local task = hoist.spawn(function() hoist.sleep(10) end)
  hoist.sleep(0.01)
  task:cancel()
  t.raises(function() task:wait() end, "cancelled")
  t.eq(task:status(), "cancelled")
end)

t.cases("errors have code, message and retryable", {
  { code = "timeout", retryable = true },
  { code = "throttled", retryable = true },
  { code = "not_found", retryable = false },
  { code = "policy_violation", retryable = false },
}, function(row)
  local e = t.raises(function() hoist.error { code = row.code, message = "m" } end, row.code)
  t.eq(e.retryable, row.retryable)
  t.match(tostring(e), "^" .. row.code .. ": m")
  t.match(e.where, "tasks_test.lua:%d+")
end)

t.case("an unknown error code is refused", function()
  t.raises(function() hoist.error { code = "nope", message = "x" } end, "invalid_argument", "nope")
end)

t.case("modules are reachable as hoist.x and require 'hoist.x'", function()
  t.ok(hoist.log == require "hoist.log")
  t.ok(hoist.test == require "hoist.test")
end)

-- Bad arguments to the task primitives raise structured invalid_argument errors naming the
-- function and the argument; none runs with a wrong argument silently ignored.
local function f() end
t.cases("task primitives reject bad arguments", {
  { name = "sleep string", call = function() hoist.sleep("1") end, pattern = "hoist%.sleep: seconds must be a number" },
  { name = "sleep nil", call = function() hoist.sleep() end, pattern = "hoist%.sleep: seconds must be a number of seconds, got nil" },
  { name = "sleep negative", call = function() hoist.sleep(-1) end, pattern = "hoist%.sleep: seconds must be >= 0" },
  { name = "spawn non-function", call = function() hoist.spawn(42) end, pattern = "hoist%.spawn: argument 1 must be a function, got number" },
  { name = "parallel non-function", call = function() hoist.parallel(f, "x") end, pattern = "hoist%.parallel: argument 2 must be a function, got string" },
  { name = "map string list", call = function() hoist.map("abc", f) end, pattern = "hoist%.map: list must be a table, got string" },
  { name = "map no fn", call = function() hoist.map({ 1 }, nil) end, pattern = "hoist%.map: fn must be a function, got nil" },
  { name = "map limit 0", call = function() hoist.map({ 1 }, f, { limit = 0 }) end, pattern = "hoist%.map: option 'limit' must be >= 1" },
  { name = "map limit string", call = function() hoist.map({ 1 }, f, { limit = "2" }) end, pattern = "hoist%.map: option 'limit' must be an integer, got string" },
  { name = "map unknown option", call = function() hoist.map({ 1 }, f, { limits = 2 }) end, pattern = "hoist%.map: unknown option 'limits'" },
  { name = "timeout string", call = function() hoist.timeout("x", f) end, pattern = "hoist%.timeout: seconds must be a number of seconds, got string" },
  { name = "timeout no fn", call = function() hoist.timeout(1, "f") end, pattern = "hoist%.timeout: fn must be a function, got string" },
}, function(row)
  local err = t.raises(row.call, "invalid_argument", row.pattern)
  t.ok(hoist.is_error(err), "a structured error")
end)

t.case("shielded: the clean-up of a cancelled task runs to its end; the task's next wait is cancelled", function()
  local log = {}
  local task = hoist.spawn(function()
    local ok, e = pcall(hoist.sleep, 10)
    log[#log + 1] = ok and "slept" or e.code
    -- a wait here would raise cancelled; shielded, it waits
    log[#log + 1] = hoist.shielded(function(x) hoist.sleep(0.05); return x * 2 end, 21)
    local ok2, e2 = pcall(hoist.sleep, 0.01)
    log[#log + 1] = ok2 and "slept" or e2.code
  end)
  hoist.sleep(0.02)
  task:cancel()
  task:wait()
  t.eq(log, { "cancelled", 42, "cancelled" })
  -- a cancellation that arrives while the shielded function runs does not cut it short
  local done = false
  local task2 = hoist.spawn(function() hoist.shielded(function() hoist.sleep(0.1); done = true end) end)
  hoist.sleep(0.02)
  task2:cancel()
  pcall(task2.wait, task2)
  t.ok(done, "the shielded function finished")
  t.raises(function() hoist.shielded(function() hoist.error { code = "conflict", message = "inner" } end) end, "conflict", "inner")
  t.raises(function() hoist.shielded(42) end, "invalid_argument", "hoist.shielded: fn must be a function")
end)

t.case("util.try returns errors like pcall but raises a cancellation again", function()
  local util = require "hoist.util"
  local ok, err = util.try(hoist.error, { code = "not_found", message = "gone" })
  t.eq(ok, false)
  t.eq(err.code, "not_found")
  t.eq({ util.try(function(a, b) return a + b, "x" end, 1, 2) }, { true, 3, "x" })
  local turns = 0
  local task = hoist.spawn(function()
    while true do -- a loop that goes on after an error: the cancellation still ends it
      turns = turns + 1
      util.try(hoist.sleep, 10)
    end
  end)
  hoist.sleep(0.05)
  task:cancel()
  local wok, werr = pcall(task.wait, task)
  t.eq(wok, false)
  t.eq(werr.code, "cancelled")
  t.eq(turns, 1)
end)

t.case("util.alarm: a sleep a wake cuts short; the sleeper's own cancellation goes up, no spin", function()
  local util = require "hoist.util"
  local a = util.alarm()
  t.eq(a:sleep(0.01), false, "the time ran out")
  local waker = hoist.spawn(function() hoist.sleep(0.02); a:wake() end)
  t.eq(a:sleep(30), true, "woken during the sleep (the test's own timeout would end a 30 s sleep)")
  waker:wait()
  a:wake()
  t.eq(a:sleep(30), true, "a wake before the sleep is used by it")
  t.eq(a:sleep(0.01), false, "once")
  -- a loop around it, cancelled from outside: cancelled comes out of the loop
  local turns = 0
  local looper = hoist.spawn(function()
    while not a:sleep(30) do turns = turns + 1 end
    return "woken"
  end)
  hoist.sleep(0.02)
  looper:cancel()
  local ok, err = pcall(looper.wait, looper)
  t.eq(ok, false)
  t.ok(hoist.is_error(err, "cancelled"), tostring(err))
  t.eq(turns, 0, "no turn after the cancellation")
end)
