-- Benchmark: n × `sleep 0.2` through hoist.exec under hoist.map, the same n run one after
-- another, and the bash peer (`for ...; do sleep 0.2 & done; wait`) timed via hoist.exec.
--
--   hoist run bench/exec_parallel.lua [--set n=50]
--
-- Reports times and ratios measured in the same minute, never a bare time against a bound.
local n = tonumber(hoist.args.n or "50")
assert(n and n >= 1, "n must be a positive number")

local list = {}
for i = 1, n do list[i] = i end

local function timed(fn)
  local started = hoist.now()
  fn()
  return hoist.now() - started
end

local parallel = timed(function()
  hoist.map(list, function() hoist.exec { "sleep", "0.2", check = true } end)
end)
local serial = timed(function()
  for _ = 1, n do hoist.exec { "sleep", "0.2", check = true } end
end)
local bash = timed(function()
  hoist.exec { "bash", "-c", ("for i in $(seq %d); do sleep 0.2 & done; wait"):format(n), check = true }
end)

print(("%d x sleep 0.2"):format(n))
print(("  hoist.map (parallel)  %6.3f s"):format(parallel))
print(("  serial                %6.3f s   (%.1f x the parallel time)"):format(serial, serial / parallel))
print(("  bash peer (& + wait)  %6.3f s   (parallel / bash = %.2f)"):format(bash, parallel / bash))
print(("  ideal                 %6.3f s   (parallel overhead %.0f ms, %.1f ms per child)")
  :format(0.2, (parallel - 0.2) * 1000, (parallel - 0.2) * 1000 / n))
return { n = n, parallel = parallel, serial = serial, bash = bash }
