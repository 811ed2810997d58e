-- tests/env/up.sh from a second checkout of the same code (a CI clone, a worktree) keeps the
-- running emulators and the token server: their signature is of content, not location. It used
-- to include the path, so a second checkout restarted them and emptied the cluster for everyone
-- using it (the token server: the token registry's logins were refused meanwhile, and an App
-- Service pull in another test file failed).
-- Needs tests/env (as root); skipped without it, failed instead when CI=true.
local t = require "hoist.test"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")
local E = os.getenv

local function pid(file) return (support.read(file) or ""):match("%d+") end

t.case("a second checkout of the same code keeps the running emulators and the token server", function()
  local state = E("HOIST_ENV_DIR")
  if not (state and E("HOIST_TEST_AZURE_CONTROL") and E("HOIST_TEST_KUBE_SERVER")) then
    if E("CI") == "true" then error("tests/env is not up (CI=true: not skipping)") end
    t.skip("tests/env is not up: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`")
  end
  local function pids()
    return { azure = pid(state .. "/azure/emulator.pid"), kube = pid(state .. "/kube/server.pid"),
             token = pid(state .. "/token/token-server.pid") }
  end
  local before = pids()
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
  t.match(r.stdout, "token%-server +running on")
  t.eq(pids(), before)
end, { timeout = 400 })
