-- The aci target and the ARM-side deploy lock (hoist.azure.target) against the Azure emulator:
-- the lock's tag on the resource group, waiting and conflict naming the holder, two takers at
-- once (one wins), the take-over of an expired lock, re-entry within a run, release.
-- Skipped loudly without the emulator's variables; failed instead when CI=true.
local t = require "hoist.test"
local T = require "hoist.azure.target"

local E = os.getenv
local CONTROL = E("HOIST_TEST_AZURE_CONTROL")
local SUB = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID")
local WHY = "the Azure emulator's variables are not set: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local RUN = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))

local cred
local function need_emulator()
  if not CONTROL or CONTROL == "" then
    if E("CI") == "true" then hoist.error { code = "unavailable", message = WHY .. " (CI=true: not skipping)" } end
    t.skip("*** aci target test skipped *** " .. WHY)
  end
  cred = cred or hoist.azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
    client_id = E("HOIST_TEST_AZURE_CLIENT_ID"), client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
end

local function group(suffix) return "hoist-aci-" .. RUN .. "-" .. suffix end

local function lock_opts(rg, run, extra)
  local o = { target = "aci", service = "web", run = run, resource_group = rg, location = "westeurope",
              subscription = SUB, credential = cred, timeout = 0 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function tags_of(rg)
  return (hoist.azure.resource_groups.get { name = rg, subscription = SUB, credential = cred } or {}).tags or {}
end

local function drop(rg)
  pcall(hoist.azure.request, { method = "DELETE", path = ("/subscriptions/%s/resourcegroups/%s"):format(SUB, rg),
                               credential = cred, poll_interval = 0.2 })
end

t.case("the lock is a tag on the resource group, released at the end; other tags stay", function()
  need_emulator()
  local rg = group("tag")
  hoist.azure.resource_groups.ensure { name = rg, location = "westeurope", tags = { team = "a" }, subscription = SUB,
                                       credential = cred }
  local h = T.lock(lock_opts(rg, "run-1"))
  t.eq(h.key, "aci/web")
  local v = tags_of(rg)["hoist-lock.aci.web"]
  t.match(v, "^run%-1:[^:]+:%d+:%d+$")
  t.eq(tags_of(rg).team, "a")
  -- the same run takes it again without waiting; it goes with the last release
  local again = T.lock(lock_opts(rg, "run-1"))
  again:release()
  t.eq(tags_of(rg)["hoist-lock.aci.web"], v)
  h:release()
  h:release()
  t.eq(tags_of(rg)["hoist-lock.aci.web"], nil)
  t.eq(tags_of(rg).team, "a")
  drop(rg)
end)

t.case("another run waits, naming the holder, then fails with conflict", function()
  need_emulator()
  local rg = group("wait")
  local h = T.lock(lock_opts(rg, "run-a"))
  local e = t.raises(function() T.lock(lock_opts(rg, "run-b", { timeout = 0.5 })) end, "conflict",
    "aci/web is being deployed by run run%-a %(host [^,]+, pid %d+")
  t.match(e.message, "hoist%-lock%.aci%.web on resource group " .. rg:gsub("%-", "%%-"))
  t.eq(e.details.holder.run, "run-a")
  -- another service of the same group is not held up
  local other = T.lock(lock_opts(rg, "run-b", { service = "api" }))
  other:release()
  h:release()
  local b = T.lock(lock_opts(rg, "run-b"))
  b:release()
  drop(rg)
end)

t.case("two runs taking it at once: exactly one holds it", function()
  need_emulator()
  local rg = group("race")
  hoist.azure.resource_groups.ensure { name = rg, location = "westeurope", subscription = SUB, credential = cred }
  local results = { hoist.parallel(function()
    local ok, h = pcall(T.lock, lock_opts(rg, "run-x"))
    return ok and h or false
  end, function()
    local ok, h = pcall(T.lock, lock_opts(rg, "run-y"))
    return ok and h or false
  end) }
  local winners = {}
  for _, h in ipairs(results) do if h then winners[#winners + 1] = h end end
  t.eq(#winners, 1, "one of two concurrent takers holds the lock")
  t.eq(tags_of(rg)["hoist-lock.aci.web"]:match("^([^:]+):"), winners[1].run)
  winners[1]:release()
  drop(rg)
end)

t.case("a lock its holder let expire is taken over, with a warning naming it", function()
  need_emulator()
  local rg = group("expired")
  hoist.azure.resource_groups.ensure { name = rg, location = "westeurope", subscription = SUB, credential = cred }
  hoist.azure.request { method = "PATCH", path = ("/subscriptions/%s/resourceGroups/%s"):format(SUB, rg), credential = cred,
                        body = { tags = { ["hoist-lock.aci.web"] = "run-dead:otherhost:4242:" .. (os.time() - 5) } } }
  local h = T.lock(lock_opts(rg, "run-new"))
  t.match(tags_of(rg)["hoist-lock.aci.web"], "^run%-new:")
  h:release()
  drop(rg)
end)

t.case("bad lock options are named", function()
  need_emulator()
  t.raises(function() T.lock(lock_opts(nil, "r", { resource_group = false })) end, "invalid_argument", "resource_group")
  t.raises(function() T.lock(lock_opts("rg", "r", { target = "a/b" })) end, "invalid_argument", "target must be a name")
  t.raises(function() T.lock(lock_opts("rg", "r", { timeout = -1 })) end, "invalid_argument", "timeout")
  t.raises(function() T.lock(lock_opts("rg", "r", { service = "bad name" })) end, "invalid_argument", "resource name")
  t.raises(function() T.prepare("targets.aci", { service = "web", resource_group = group("nowhere"), subscription = SUB,
                                                 credential = cred }) end, "invalid_argument", "give location= to create it")
end)
