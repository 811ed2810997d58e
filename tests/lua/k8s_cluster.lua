-- The Kubernetes emulator of tests/env for the rollback, lock and target tests (loaded by them;
-- not a test file): the gate, and a client in a namespace of the test's own. Load it with
--   local cluster = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/k8s_cluster.lua")
local t = require "hoist.test"

local M = {}

M.WHY = "the Kubernetes emulator is not up: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"

--- Returns when the emulator's variables are set; skips the case without them, fails with CI=true.
function M.need()
  if os.getenv("HOIST_TEST_KUBE_SERVER") and os.getenv("KUBECONFIG") then return end
  if os.getenv("CI") == "true" then error(M.WHY .. " (CI=true: not skipping)") end
  t.skip("*** skipped *** " .. M.WHY)
end

--- A fresh namespace name "<prefix>-<time><random>".
function M.namespace(prefix)
  math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
  return ("%s-%x%04x"):format(prefix, os.time() % 0x100000, math.random(0, 0xffff))
end

--- A client whose namespace is `ns`, made (and the namespace created) at the first call.
function M.client_in(ns)
  local kube
  return function()
    M.need()
    if not kube then
      kube = hoist.k8s.client { namespace = ns }
      kube:apply { apiVersion = "v1", kind = "Namespace", metadata = { name = ns } }
    end
    return kube
  end, function() if kube then kube:delete { kind = "Namespace", name = ns, missing_ok = true } end end
end

-- Waits up to `seconds` for fn() to be true.
local function within(seconds, fn)
  local deadline = hoist.now() + seconds
  while hoist.now() < deadline do
    if fn() then return true end
    hoist.sleep(0.2)
  end
  return false
end

--- Skips (loudly) when the emulator runs without its deployment controller: a Deployment's
--- status never moves then (an emulator started with an older tests/emulators/kube).
local missing = {} -- what an earlier probe found missing: "controllers", "kubelet" -> message

local function skip(what, message)
  missing[what] = message
  if os.getenv("CI") == "true" then error(message .. " (CI=true: not skipping)") end
  t.skip("*** skipped *** " .. message)
end

function M.need_controllers(c)
  if missing.controllers then skip("controllers", missing.controllers) end
  c:apply { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = "probe-controllers" },
            spec = { replicas = 0, selector = { matchLabels = { app = "probe-controllers" } },
                     template = { metadata = { labels = { app = "probe-controllers" } },
                                  spec = { containers = { { name = "app", image = "probe:1" } } } } } }
  local ok = within(30, function()
    return ((c:get { kind = "Deployment", name = "probe-controllers" }.status or {}).observedGeneration or 0) > 0
  end)
  c:delete { kind = "Deployment", name = "probe-controllers", missing_ok = true }
  if not ok then skip("controllers", "the emulator runs without its deployment controller (no status.observedGeneration within 30 s)") end
end

--- Skips (loudly) when the emulator runs no kubelet (started with --no-kubelet): pods never
--- get container states then.
function M.need_kubelet(c, image)
  if missing.kubelet then skip("kubelet", missing.kubelet) end
  c:apply { apiVersion = "v1", kind = "Pod", metadata = { name = "probe-kubelet" },
            spec = { containers = { { name = "app", image = image, command = { "sh", "-c", "sleep 30" } } } } }
  local ok = within(15, function()
    return (c:get { kind = "Pod", name = "probe-kubelet" }.status or {}).containerStatuses ~= nil
  end)
  c:delete { kind = "Pod", name = "probe-kubelet", missing_ok = true }
  if not ok then skip("kubelet", "the emulator runs no kubelet (no container states within 15 s): start it without --no-kubelet") end
end

--- Skips (loudly) when the emulator's kubelet runs no hostNetwork pods (an emulator started
--- from an older tests/emulators/kube: the pod gets a 10.244.x.y address instead of the host's
--- 127.0.0.1, and cannot reach the registries and the API server there).
function M.need_host_network(c, image)
  if missing.host_network then skip("host_network", missing.host_network) end
  c:apply { apiVersion = "v1", kind = "Pod", metadata = { name = "probe-host-network" },
            spec = { hostNetwork = true, containers = { { name = "app", image = image, command = { "sh", "-c", "sleep 30" } } } } }
  local ip
  within(15, function()
    ip = (c:get { kind = "Pod", name = "probe-host-network" }.status or {}).podIP
    return ip ~= nil
  end)
  c:delete { kind = "Pod", name = "probe-host-network", missing_ok = true }
  if ip ~= "127.0.0.1" then
    skip("host_network", ("the emulator's kubelet runs no hostNetwork pods (pod IP %s, not 127.0.0.1): restart it from this tree (tests/env/up.sh)")
      :format(tostring(ip)))
  end
end

return M
