-- Helpers shared by the Lua tests (loaded by them; not a test file, so the runner skips it):
-- files, temp folders, the hoist executable and its CLI, the tests/env gate and the recorded
-- fixtures of ../shared/fixtures. Load it from a test file with
--   local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
-- which works whether the runner was given an absolute path (ctest) or a relative one.
local t = require "hoist.test"

local M = {}

-- An absolute, normalized path (".", ".." and "//" resolved in the text, symlinks kept).
-- Pure Lua on purpose: dofile is a C call, so nothing that waits (hoist.exec) may run while
-- this file loads.
local function absolute(path)
  if path:sub(1, 1) ~= "/" then path = (os.getenv("PWD") or ".") .. "/" .. path end
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." and #parts > 0 and parts[#parts] ~= ".." and parts[#parts] ~= "." then
      parts[#parts] = nil
    elseif part ~= "." or #parts == 0 then
      parts[#parts + 1] = part
    end
  end
  local out = table.concat(parts, "/")
  if path:sub(1, 1) == "/" then out = "/" .. out end
  return out ~= "" and out or "/"
end

-- This folder (tests/lua) and the repository root, as absolute paths.
M.here = absolute(debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
M.root = absolute(M.here .. "/../..")

---------------------------------------------------------------- files

-- The whole file, or nil when it cannot be opened.
---@param path string
---@return string|nil
function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- The whole file; raises when it cannot be opened (for files a test relies on).
---@param path string
---@return string
function M.must_read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

---@param path string
---@param text string
function M.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

---@param path string
---@return boolean
function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- A fresh folder: /tmp/<prefix>.XXXXXX, or mktemp's default name without a prefix.
---@param prefix string|nil
---@return string
function M.tmpdir(prefix)
  local argv = { "mktemp", "-d", check = true }
  if prefix then argv[3] = "/tmp/" .. prefix .. ".XXXXXX" end
  return (hoist.exec(argv).stdout:match("%S+"))
end

-- A TCP port free on 127.0.0.1 right now (the kernel's pick).
---@return integer
function M.free_port()
  local r = hoist.exec { "python3", "-c",
    "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])", check = true }
  return tonumber(r.stdout:match("%d+"))
end

---------------------------------------------------------------- the hoist executable

-- The hoist executable running this test: $HOIST_BIN (ctest sets it), else /proc/<pid>/exe.
---@return string
function M.hoist_bin()
  local bin = os.getenv("HOIST_BIN")
  if bin and bin ~= "" then return bin end
  local pid = M.must_read("/proc/self/stat"):match("^(%d+)")
  return hoist.exec({ "readlink", "/proc/" .. pid .. "/exe", check = true }).stdout:match("[^\n]+")
end

-- The command line of `hoist run <pipeline>` with its own state folder and `--set k=v` for
-- each parameter of `params` (tables are not parameters here: pass text).
---@param pipeline string e.g. "container@1"
---@param state string the --state-dir
---@param params table<string, string|number|boolean>
---@return string[]
function M.run_argv(pipeline, state, params)
  local argv = { M.hoist_bin(), "run", pipeline, "--state-dir", state, "--no-color" }
  for k, v in pairs(params) do
    argv[#argv + 1] = "--set"
    argv[#argv + 1] = k .. "=" .. tostring(v)
  end
  return argv
end

-- Runs `hoist <args...>` in a child and returns hoist.exec's result (code, stdout, stderr...).
-- opts: env, timeout, stdin, cwd, passed on to hoist.exec.
---@param args string[]
---@param opts table|nil
---@return table
function M.run_hoist(args, opts)
  local argv = { M.hoist_bin() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  for _, k in ipairs { "env", "timeout", "stdin", "cwd" } do argv[k] = opts and opts[k] end
  return hoist.exec(argv)
end

-- Runs `hoist run` of a pipeline whose deploy stage takes the deploy lock of `target` with
-- `opts` (hoist.targets.lock) and holds it, as container@1 does, until the run's summary; once
-- it holds the lock, `while_held()` runs, then the run gets SIGTERM. Returns the run's exit
-- code and its whole output (stdout and stderr).
---@param target string
---@param opts table the lock options (besides run and timeout)
---@param while_held fun()|nil
---@param env table|nil
---@return {code: integer, output: string}
function M.sigterm_holder(target, opts, while_held, env)
  local dir = M.tmpdir("hoist-sigterm")
  local script, log, pidfile = dir .. "/hold.lua", dir .. "/run.log", dir .. "/pid"
  M.write(script, ([[
local held
hoist.pipeline.run({ name = "hold", version = "1.0.0",
  stages = { { name = "deploy", run = function(ctx)
    local o = hoist.json.decode(%q)
    o.run, o.timeout = ctx.run.id, 0
    held = require("hoist.targets").lock(%q, o)
    io.stdout:write("HOLDING THE LOCK\n")
    io.stdout:flush()
    hoist.sleep(120)
  end } },
  summary = function() if held then held:release() end end }, {})
]]):format(hoist.json.encode(opts), target))
  local task = hoist.spawn(function()
    return hoist.exec { "sh", "-c", 'echo $$ > "$1"; exec "$2" run --no-color --state-dir "$3" "$4" > "$5" 2>&1', "sh", pidfile,
                        M.hoist_bin(), dir .. "/state", script, log, env = env, timeout = 300 }
  end)
  local deadline = hoist.now() + 120
  while not (M.read(log) or ""):find("HOLDING THE LOCK", 1, true) do
    if task:status() ~= "running" or hoist.now() > deadline then
      error("the run never held the lock:\n" .. (M.read(log) or ""), 0)
    end
    hoist.sleep(0.1)
  end
  if while_held then while_held() end
  hoist.exec { "kill", "-TERM", M.must_read(pidfile):match("%d+"), check = true }
  local r = task:wait()
  local out = { code = r.code, output = M.read(log) or "" }
  hoist.exec { "rm", "-rf", dir }
  return out
end

---------------------------------------------------------------- the test environment

M.ENV_MISSING = "HOIST_TEST_DOCKER is not set: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"

-- Returns when tests/env is up (HOIST_TEST_DOCKER=1); otherwise skips loudly with
-- "*** <what> skipped *** <why>", or fails with code unavailable when CI=true.
---@param what string   e.g. "docker integration test"
---@param why string|nil defaults to M.ENV_MISSING
function M.need_docker(what, why)
  if os.getenv("HOIST_TEST_DOCKER") == "1" then return end
  why = why or M.ENV_MISSING
  if os.getenv("CI") == "true" then hoist.error { code = "unavailable", message = why .. " (CI=true: not skipping)" } end
  t.skip("*** " .. what .. " skipped *** " .. why)
end

---------------------------------------------------------------- a prober

--- An AKS cluster in the Azure emulator (its credentials are the Kubernetes emulator's):
--- Microsoft.ContainerService registered, group `rg` ensured, the cluster PUT. Returns
--- {cred, sub, rg, cluster, drop = function() (deletes the group, errors ignored)}.
---@param rg string
---@param cluster string
function M.aks_cluster(rg, cluster)
  local E = os.getenv
  local sub = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID")
  local cred = hoist.azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
    client_id = E("HOIST_TEST_AZURE_CLIENT_ID"), client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
  hoist.azure.providers.ensure { namespace = "Microsoft.ContainerService", credential = cred, subscription = sub }
  hoist.azure.resource_groups.ensure { name = rg, location = "westeurope", credential = cred, subscription = sub }
  hoist.azure.request { method = "PUT", credential = cred, api_version = "2024-05-01", poll_interval = 0.2,
    path = hoist.azure.resource_id(sub, rg, "Microsoft.ContainerService/managedClusters", cluster),
    body = { location = "westeurope", properties = { dnsPrefix = "hoist" .. cluster:gsub("[^%w]", ""):sub(1, 20) } } }
  return { cred = cred, sub = sub, rg = rg, cluster = cluster, drop = function()
    pcall(hoist.azure.request, { method = "DELETE", credential = cred, path = hoist.azure.resource_id(sub, rg) })
  end }
end

-- Asks `url` (e.g. a Service's /version) every `interval` seconds (0.05) until :stop(),
-- keeping {at, version | error} per request: what a user would see during a deploy.
---@param url string
---@param interval? number
function M.prober(url, interval)
  local p = { samples = {}, stopped = false }
  p.task = hoist.spawn(function()
    while not p.stopped do
      local ok, r = pcall(hoist.http.get, url, { timeout = 2 })
      local s = { at = hoist.now() }
      if ok and r.status == 200 then s.version = r.body:gsub("%s+$", "") else s.error = ok and ("status " .. r.status) or tostring(r.message or r) end
      p.samples[#p.samples + 1] = s
      hoist.sleep(interval or 0.05)
    end
  end)
  function p:stop()
    if self.stopped then return end
    self.stopped = true
    pcall(self.task.wait, self.task)
  end
  -- How many requests since `since` failed, and the first failure's text.
  function p:failures(since)
    local n, first = 0, nil
    for _, s in ipairs(self.samples) do
      if s.at >= (since or 0) and s.error then n = n + 1; first = first or s.error end
    end
    return n, first
  end
  -- The versions that answered since `since`, sorted.
  function p:versions(since)
    local seen, out = {}, {}
    for _, s in ipairs(self.samples) do
      if s.at >= (since or 0) and s.version and not seen[s.version] then seen[s.version] = true; out[#out + 1] = s.version end
    end
    table.sort(out)
    return out
  end
  -- Seconds from `since` until every answer is `version` from then on.
  function p:back_after(since, version)
    local last_other = since
    for _, s in ipairs(self.samples) do
      if s.at >= since and s.version ~= version then last_other = s.at end
    end
    return last_other - since
  end
  return p
end

---------------------------------------------------------------- recorded fixtures

M.SKIP_SHARED = "skipped: ../shared/fixtures not found"
M.SHARED = os.getenv("HOIST_FIXTURES") or (M.root .. "/../shared/fixtures")
if M.SHARED == "" then M.SHARED = M.root .. "/../shared/fixtures" end

-- Skips the running case because ../shared/fixtures is not there (M.SKIP_SHARED), or fails it
-- with code unavailable when CI=true: CI has the fixtures. The ctest `shared-fixtures`
-- (tests/shared_fixtures.sh) shows the skip in the ctest summary.
function M.skip_shared()
  if os.getenv("CI") == "true" then
    hoist.error { code = "unavailable", message = "../shared/fixtures absent (" .. M.SHARED .. ") and CI=true: not skipping" }
  end
  t.skip(M.SKIP_SHARED)
end

-- The ../shared/fixtures folder (next to the repository; HOIST_FIXTURES elsewhere), or nil when it is not there.
---@return string|nil
function M.shared_fixtures()
  if M.exists(M.SHARED .. "/SOURCES.md") then return M.SHARED end
  return nil
end

-- The path of ../shared/fixtures/<name>; skips the case with M.SKIP_SHARED when it is missing.
---@param name string
---@return string
function M.shared(name)
  local path = M.SHARED .. "/" .. name
  if not M.exists(path) then M.skip_shared() end
  return path
end

-- The files under ../shared/fixtures[/sub] whose names match one of the find(1) patterns,
-- sorted, as case rows {name = "../shared/fixtures/...", path = absolute}; nil without them.
---@param sub string|nil
---@param patterns string[]
---@return table[]|nil
function M.fixture_files(sub, patterns)
  local base = M.shared_fixtures()
  if not base then return nil end
  local dir = sub and base .. "/" .. sub or base
  local args = { "find", dir, "-type", "f", "(" }
  for i, p in ipairs(patterns) do
    if i > 1 then args[#args + 1] = "-o" end
    args[#args + 1] = "-name"; args[#args + 1] = p
  end
  args[#args + 1] = ")"
  local files = {}
  for line in hoist.exec(args).stdout:gmatch("[^\n]+") do
    files[#files + 1] = { name = "../shared/fixtures" .. line:sub(#base + 1), path = line }
  end
  table.sort(files, function(a, b) return a.path < b.path end)
  return files
end

return M
