-- tests/env/up.sh from a second checkout of the same code (a CI clone, a worktree) keeps the
-- running emulators: their signature is of content, not location. It used to include the
-- path, so a second checkout restarted them and emptied the cluster for everyone using it.
-- Needs tests/env (as root); skipped without it, failed instead when CI=true.
local t = require "hoist.test"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")
local E = os.getenv

local function pid(file) return (support.read(file) or ""):match("%d+") end

t.case("a second checkout of the same code keeps the running emulators", function()
  local state = E("HOIST_ENV_DIR")
  if not (state and E("HOIST_TEST_AZURE_CONTROL") and E("HOIST_TEST_KUBE_SERVER")) then
    if E("CI") == "true" then error("tests/env is not up (CI=true: not skipping)") end
    t.skip("tests/env is not up: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`")
  end
  local before = { azure = pid(state .. "/azure/emulator.pid"), kube = pid(state .. "/kube/server.pid") }
  local copy = support.tmpdir("hoist-env-copy")
  hoist.exec { "mkdir", "-p", copy .. "/tests", check = true }
  for _, d in ipairs { "env", "emulators" } do
    hoist.exec { "cp", "-a", support.root .. "/tests/" .. d, copy .. "/tests/", check = true }
  end
  local r = hoist.exec { copy .. "/tests/env/up.sh", env = { HOIST_ENV_DIR = state }, timeout = 300 }
  hoist.exec { "rm", "-rf", copy }
  t.eq(r.code, 0, r.stdout .. r.stderr)
  t.match(r.stdout, "azure +running on")
  t.match(r.stdout, "kube +running on")
  t.eq({ azure = pid(state .. "/azure/emulator.pid"), kube = pid(state .. "/kube/server.pid") }, before)
end, { timeout = 400 })
