--- hoist.targets.local: deploys a container on the local Docker engine behind a stable front.
---
--- The service port (127.0.0.1:PORT) belongs to a small TCP proxy (`hoist proxy`, see
--- hoist.proxy), never to a container. A deploy starts the new container beside the old one
--- on an ephemeral loopback port, checks its health there, switches the proxy (new
--- connections go to the new one, open ones finish on the old), lets the old one drain, then
--- stops and removes it. A new container that fails its check is removed and the old one
--- never stopped serving.
---
--- Containers carry labels, so the target finds what runs without local state:
---   hoist.service=<name>  hoist.run=<run id that created it>  hoist.role=candidate|active
---   hoist.container_port=<port>  hoist.health_path=<path>
--- Labels cannot change after creation, so the serving container is the one NAMED <name>:
--- a deploy creates `<name>-<run id>` (role candidate) and renames it to <name> once it took
--- over; a rollback that recreates the previous container creates it as <name> (role active).
---
--- Compensations (named actions, JSON arguments, idempotent; `hoist rollback <run-id>` runs
--- them from a new process): "local.remove_candidate" and "local.restore". Each touches only
--- what its own run created: once another run has deployed the service since, restoring is
--- not this run's business any more (it says so and succeeds).
---
--- Deploys, compensations and remove hold the deploy lock of the service
--- (hoist.targets.lock, a file lock in the state folder), so they never interleave.
local M = {}

M.name = "local"

--- The options only this target takes (the common ones are hoist.targets.options).
M.options = {
  port = { type = "number", required = true, integer = true, min = 1, max = 65535,
           description = "Service port on 127.0.0.1 (served by hoist proxy)" },
  drain = { type = "number", default = 2, min = 0, description = "Seconds the old container keeps its open connections after the switch" },
}

--- The named rollback actions deploy registers.
M.compensations = { "local.remove_candidate", "local.restore" }

local locks = require "hoist.targets.lock"

local L_SERVICE, L_RUN, L_ROLE = "hoist.service", "hoist.run", "hoist.role"
local L_PORT, L_HEALTH = "hoist.container_port", "hoist.health_path"
-- names (never values) of the env variables that hold secrets, so a later run knows them
local L_SECRET_ENV = "hoist.secret_env"

local util = require "hoist.util"
local fail = util.fail

local dry_run = util.dry_run

---------------------------------------------------------------- docker helpers

-- docker inspect of a container, nil when there is none.
local function inspect(name)
  local ok, info = pcall(hoist.docker.inspect, { name = name, type = "container" })
  if ok then return info end
  if hoist.is_error(info, "not_found") then return nil end
  error(info, 0)
end

local function labels_of(info) return (info and info.Config and info.Config.Labels) or {} end
local function name_of(info) return ((info and info.Name) or ""):gsub("^/", "") end

-- The loopback port docker published for container_port, nil when none (yet).
local function host_port(info, container_port)
  return hoist.docker.published_ports(info)[container_port]
end

-- `docker rename` (hoist.docker has no wrapper for it); honours dry-run.
local function rename(from, to)
  local bin = os.getenv("HOIST_DOCKER_BIN")
  local argv = { (bin and bin ~= "") and bin or "docker", "rename", from, to }
  if dry_run() then
    util.plan { action = "docker.rename", argv = argv }
    return
  end
  argv.timeout = 60
  local r = hoist.exec(argv)
  if r.code ~= 0 then
    fail("tool_failed", ("docker rename %s %s failed: %s"):format(from, to, (r.stderr or ""):gsub("%s+$", "")),
      { stderr = r.stderr, status = r.code })
  end
end

-- The environment the container was started with: its Env minus the image's own.
local function run_env(info)
  local image_env = {}
  local ok, image = util.try(hoist.docker.inspect, { name = info.Image, type = "image" })
  if ok and image and image.Config then
    for _, kv in ipairs(image.Config.Env or {}) do image_env[kv] = true end
  end
  local env = {}
  for _, kv in ipairs(info.Config.Env or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if k and not image_env[kv] then env[k] = v end
  end
  return env
end

---@class hoist.targets.local.Snapshot what restores a container: same image, same config
---@field id string container id
---@field name string
---@field image_id string "sha256:..." local image id
---@field image string the reference it was started from (repository@digest)
---@field env table<string, string> the environment given at run time
---@field labels table<string, string>
---@field container_port integer
---@field health_path string
---@field run string the run that created it

local function snapshot(info, fallback)
  local labels = labels_of(info)
  local env = run_env(info)
  -- secrets set by an earlier run: register them here too before anything is written
  for key in (labels[L_SECRET_ENV] or ""):gmatch("[^,]+") do
    local v = env[key]
    if type(v) == "string" and #v >= 4 then hoist.secret(v) end
  end
  return {
    id = info.Id, name = name_of(info), image_id = info.Image, image = info.Config.Image,
    env = env, labels = labels, run = labels[L_RUN] or "",
    container_port = tonumber(labels[L_PORT]) or fallback.container_port,
    health_path = labels[L_HEALTH] or fallback.health_path,
  }
end

---------------------------------------------------------------- checks

local function health_url(port, path) return ("http://127.0.0.1:%d%s"):format(port, path) end

-- The new container must answer on its own port before it takes any traffic.
local function check_health(port, path, verify, name)
  verify = verify or {}
  local url = health_url(port, path)
  return hoist.verify.http {
    name = ("GET %s (%s)"):format(url, name), url = url, expect_status = 200,
    retries = verify.retries or 30, interval = verify.interval or 1, timeout = verify.timeout or 5,
  }
end

-- The deploy lock of a service, held by `run` (again, when this process holds it already).
local function lock(service, run, state_dir, timeout)
  return locks.acquire { target = M.name, service = service, run = run, state_dir = state_dir, timeout = timeout }
end

-- Runs fn holding the lock; a compensation's args carry what it needs to find it.
local function locked(args, fn)
  return locks.with({ target = M.name, service = args.service, run = args.run, state_dir = args.state_dir,
                      timeout = args.lock_timeout }, fn, args)
end

---------------------------------------------------------------- the front

local function upstream_of(port) return ("127.0.0.1:%s"):format(tostring(port)) end

-- Points the service port at `upstream`: switch the running proxy, or start one.
local function take_over(service, port, state, upstream)
  local front = hoist.proxy.status { state = state }
  if front.running then
    if front.applied == upstream then return front end
    return hoist.proxy.switch { state = state, upstream = upstream }
  end
  return hoist.proxy.start { name = service, listen = upstream_of(port), upstream = upstream, state = state }
end

---------------------------------------------------------------- compensations

-- Removes the candidates this run started, unless one of them serves the service port (a
-- restore that could not take over must not be followed by an outage).
local function remove_candidate(args)
  local rows = hoist.docker.ps { all = true, filters = { label = {
    L_SERVICE .. "=" .. args.service, L_RUN .. "=" .. args.run, L_ROLE .. "=candidate" } } }
  if #rows == 0 then return end
  local front = args.proxy_state and hoist.proxy.status { state = args.proxy_state } or { running = false }
  for _, row in ipairs(rows) do
    local info = inspect(row.id)
    if info then
      local hp = host_port(info, tonumber(labels_of(info)[L_PORT]) or 0)
      if front.running and hp and front.applied == upstream_of(hp) then
        fail("conflict", ("container %s still serves %s (the proxy sends it new connections): not removing it")
          :format(name_of(info), tostring(front.listen)), { container = name_of(info), listen = front.listen })
      end
      hoist.docker.rm { name = info.Id, force = true, missing_ok = true }
      hoist.log.info(("removed container %s of run %s"):format(name_of(info), args.run))
    end
  end
end

-- Moves this run's candidate off the service name so the previous container can have it.
local function free_service_name(args, keep_id)
  local holder = inspect(args.service)
  if not holder or holder.Id == keep_id then return end
  local run = labels_of(holder)[L_RUN]
  if run ~= args.run then
    fail("conflict", ("container %s now belongs to run %s, not to run %s: the service was deployed again since; "
      .. "not restoring the older version over it"):format(args.service, tostring(run), args.run),
      { container = args.service, run = run })
  end
  rename(holder.Id, args.candidate)
end

-- The names of the variables whose values are registered secrets, sorted.
local function secret_keys(env)
  local keys = {}
  for k, v in pairs(env or {}) do
    if type(v) == "string" and hoist.scrub(v) ~= v then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

--- The folder of a service's 0600 files holding the environment (with secrets) of the
--- Internal: where the local target keeps secret env files.
--- containers a rollback may recreate: `<state_dir>/local/<service>/`.
---@param service string
---@param state_dir? string
---@return string
function M.secret_dir(service, state_dir)
  return ("%s/local/%s"):format(state_dir or hoist.run.state_dir or ".hoist", service)
end

-- The journal is scrubbed of secrets, so an environment holding one cannot travel in the
-- compensation's arguments: it is kept in a 0600 file of the state folder instead (docker
-- itself keeps the same values in its container config).
local function keep_secret_env(prev, service, state_dir, run_id)
  if not prev or dry_run() then return prev end
  local keys = secret_keys(prev.env)
  if #keys == 0 then return prev end
  local dir = M.secret_dir(service, state_dir)
  local path = ("%s/%s.env.json"):format(dir, run_id)
  hoist.fs.mkdir(dir, { mode = "0700" })
  hoist.fs.write_file(path, hoist.json.encode { env = prev.env, secret_keys = keys }, { mode = "0600" })
  prev.env, prev.env_file = nil, path
  return prev
end

local function previous_env(prev)
  if not prev.env_file then return prev.env or {} end
  local text = hoist.fs.read_file(prev.env_file, { missing_ok = true })
  if not text then
    fail("rollout_failed", ("cannot recreate the previous container: its environment (with secrets) was kept in %s, "
      .. "which is gone"):format(prev.env_file), { env_file = prev.env_file })
  end
  local kept = hoist.json.decode(text)
  -- a rollback may run in a later process: register the secrets again before any output
  for _, k in ipairs(kept.secret_keys or {}) do
    local v = kept.env[k]
    if type(v) == "string" and #v >= 4 then hoist.secret(v) end
  end
  return kept.env
end

-- Starts the previous container again from its snapshot: same image, env, port and labels.
local function recreate(prev, service)
  local labels = {}
  for k, v in pairs(prev.labels or {}) do labels[k] = v end
  labels[L_ROLE] = "active"
  local spec = { name = service, ports = { tostring(prev.container_port) }, env = previous_env(prev), labels = labels }
  -- The same reference as before when it still names the same image (a tag may have moved
  -- since; a digest cannot), else the image id itself.
  local ok_ref, ref_info = util.try(hoist.docker.inspect, { name = prev.image, type = "image" })
  local ref_same = ok_ref and ref_info and ref_info.Id == prev.image_id
  spec.image = ref_same and prev.image or prev.image_id
  local ok, err = pcall(hoist.docker.run, spec)
  if not ok and not ref_same and hoist.is_error(err, "not_found") and (prev.image or ""):find("@sha256:", 1, true) then
    hoist.log.warn(("image %s is gone locally; pulling %s"):format(prev.image_id, prev.image))
    spec.image = prev.image
    ok, err = pcall(hoist.docker.run, spec)
  end
  if not ok then error(err, 0) end
  hoist.log.info(("recreated %s from %s"):format(service, spec.image))
  return inspect(service)
end

-- The run whose container the front sends new connections to; nil when none or unknown.
local function serving_run(args, front)
  if not front.running or not front.applied then return nil end
  for _, row in ipairs(hoist.docker.ps { all = true, filters = { label = L_SERVICE .. "=" .. args.service } }) do
    local info = inspect(row.id)
    local hp = info and host_port(info, tonumber(labels_of(info)[L_PORT]) or 0)
    if hp and upstream_of(hp) == front.applied then return labels_of(info)[L_RUN] or "" end
  end
end

-- The run that deployed the service after this one (its container has the service name, or
-- the front), nil when nothing newer than this run and its previous version serves.
local function superseded_by(args, prev)
  local ours = { [args.run] = true }
  if prev and prev.run and prev.run ~= "" then ours[prev.run] = true end
  local holder = inspect(args.service)
  local hrun = holder and labels_of(holder)[L_RUN]
  if holder and not ours[hrun] and not (prev and holder.Id == prev.id) then return hrun or "?" end
  local srun = serving_run(args, hoist.proxy.status { state = args.proxy_state })
  if srun and not ours[srun] then return srun end
end

-- Puts the previous container back behind the service port (or, when the service did not
-- exist before, takes the front down). Safe to run again at any point. Once another run
-- deployed the service since, it leaves the service alone.
local function restore(args)
  local state, prev = args.proxy_state, args.previous
  local newer = superseded_by(args, prev)
  if newer then
    hoist.log.event("local.superseded", ("not restoring %s: run %s deployed it since, and its version serves")
      :format(args.service, newer), { service = args.service, run = args.run, newer = newer })
    return
  end
  if not prev then
    local front = hoist.proxy.status { state = state }
    if front.running then hoist.proxy.stop { state = state } end
    return
  end
  local target = inspect(prev.id)
  if target and not (target.State and target.State.Running) then
    hoist.docker.rm { name = target.Id, force = true, missing_ok = true }
    target = nil
  end
  if not target then
    local holder = inspect(args.service)
    if holder and labels_of(holder)[L_RUN] == prev.run and holder.Image == prev.image_id
        and holder.State and holder.State.Running then
      target = holder -- an earlier attempt of this rollback recreated it
    else
      free_service_name(args, nil)
      target = recreate(prev, args.service)
    end
  end
  local hp = host_port(target, prev.container_port)
  if not hp then fail("rollout_failed", ("restored container %s publishes no port for %d"):format(name_of(target), prev.container_port)) end
  check_health(hp, prev.health_path, args.verify, name_of(target))
  take_over(args.service, args.port, state, upstream_of(hp))
  if name_of(target) ~= args.service then
    free_service_name(args, target.Id)
    rename(target.Id, args.service)
  end
  hoist.log.event("local.restored", ("%s serves %s again (%s)"):format(args.service, upstream_of(args.port), prev.image),
    { service = args.service, image = prev.image, container = target.Id })
end

local function local_args(extra)
  return require("hoist.util").spec({ service = { type = "string", required = true }, run = "string",
    proxy_state = { type = "string", required = true }, state_dir = "string", lock_timeout = "number" }, extra)
end
hoist.pipeline.action("local.remove_candidate", function(args) locked(args, remove_candidate) end,
  { args = local_args { name = { type = "string", required = true } } })
hoist.pipeline.action("local.restore", function(args) locked(args, restore) end, { args = local_args {
  port = "number", candidate = { type = "string", required = true }, previous = { type = "table|boolean", required = true },
  verify = "table" } })

---------------------------------------------------------------- deploy

-- The failed check for an error's details: where, how often, and the last answer (every
-- attempt is in the run's events already).
local function brief_check(err)
  local d = hoist.is_error(err) and err.details or nil
  if type(d) ~= "table" then return nil end
  local evidence = d.evidence or {}
  return { url = d.url, attempts = d.attempts, last = evidence[#evidence] }
end

-- Test hooks: a window to SIGKILL the run in (seconds from the environment).
local function test_pause(variable, what) return require("hoist.targets").test_pause(variable, what) end

---@class hoist.targets.local.DeployOptions: hoist.targets.DeployOptions
---@field port integer the service port on 127.0.0.1 (local only)
---@field drain? number seconds the old container keeps its open connections after the switch (default 2; local only)

---@class hoist.targets.local.DeployResult: hoist.targets.DeployResult
---@field container string the serving container's name (= service)
---@field upstream string the container's own loopback address

local function deploy(o, run_id, state_dir)
  local ctx = o.ctx
  local state = hoist.proxy.state_file(o.service, state_dir)
  local on_rollback = function(action, args)
    if ctx then ctx:on_rollback(action, args) end
  end

  -- what serves now
  local current = inspect(o.service)
  if current and labels_of(current)[L_SERVICE] ~= o.service then
    fail("conflict", ("a container named %s exists that hoist did not start (no label %s=%s): rename or remove it, "
      .. "or deploy under another name"):format(o.service, L_SERVICE, o.service), { container = o.service })
  end
  local previous = current and current.State and current.State.Running and snapshot(current, o) or nil
  previous = keep_secret_env(previous, o.service, state_dir, run_id)
  local front = hoist.proxy.status { state = state }
  if front.running and front.listen ~= upstream_of(o.port) then
    fail("conflict", ("service %s is served on %s, not on %s: deploy with port=%s, or take it down first "
      .. "(hoist.targets.local.remove)"):format(o.service, tostring(front.listen), upstream_of(o.port),
      tostring(front.listen):match(":(%d+)$") or "?"), { listen = front.listen })
  end

  -- the candidate, beside the old one
  local candidate = o.service .. "-" .. run_id
  local labels = { [L_SERVICE] = o.service, [L_RUN] = run_id, [L_ROLE] = "candidate",
                   [L_PORT] = tostring(o.container_port), [L_HEALTH] = o.health_path }
  for k, v in pairs(o.labels or {}) do labels[k] = v end
  local env = {}
  for k, v in pairs(o.env or {}) do env[k] = v end
  for k, v in pairs(o.secret_env or {}) do env[k] = hoist.secret(v) end
  local keys = secret_keys(env)
  if #keys > 0 then labels[L_SECRET_ENV] = table.concat(keys, ",") end
  on_rollback("local.remove_candidate", { service = o.service, run = run_id, name = candidate, proxy_state = state,
                                          state_dir = state_dir, lock_timeout = o.lock_timeout })
  local started = hoist.docker.run { image = o.image, name = candidate, ports = { tostring(o.container_port) },
                                     env = env, labels = labels }
  local cand_port = (started.ports or {})[o.container_port]
  if not dry_run() and not cand_port then
    hoist.docker.rm { name = candidate, force = true, missing_ok = true }
    fail("rollout_failed", ("container %s publishes no port for %d"):format(candidate, o.container_port))
  end
  test_pause("HOIST_TEST_PAUSE_IN_DEPLOY", "with candidate " .. candidate .. " running")

  if not dry_run() then
    local ok, err = pcall(check_health, cand_port, o.health_path, o.verify, candidate)
    if not ok then
      if hoist.is_error(err, "cancelled") then error(err, 0) end
      local _, logs = util.try(hoist.docker.logs, { name = candidate, tail = 20 })
      hoist.docker.rm { name = candidate, force = true, missing_ok = true }
      local still = previous and ("%s (%s) keeps serving %s"):format(o.service, previous.image, upstream_of(o.port))
        or "nothing was serving before"
      fail("rollout_failed", ("the new container %s did not become healthy (%s); it was removed and %s")
        :format(candidate, hoist.is_error(err) and err.message or tostring(err), still),
        { container = candidate, image = o.image, check = brief_check(err), logs = type(logs) == "string" and logs or nil })
    end
  end

  -- take over the service port, then retire the old container
  on_rollback("local.restore", { service = o.service, port = o.port, proxy_state = state, run = run_id,
                                 candidate = candidate, previous = previous or false, verify = o.verify,
                                 state_dir = state_dir, lock_timeout = o.lock_timeout })
  local upstream = upstream_of(cand_port or "<candidate port>")
  take_over(o.service, o.port, state, upstream)
  test_pause("HOIST_TEST_PAUSE_AFTER_SWITCH", "after the switch to " .. candidate)
  if current then
    if previous and not dry_run() and (o.drain or 2) > 0 then hoist.sleep(o.drain or 2) end
    hoist.docker.stop { name = current.Id, timeout = 10, missing_ok = true }
    hoist.docker.rm { name = current.Id, force = true, missing_ok = true }
  end
  rename(candidate, o.service)
  hoist.log.event("local.deployed", ("%s%s %s %s from %s"):format(dry_run() and "dry run: " or "", o.service,
    dry_run() and "would serve" or "serves", upstream_of(o.port), o.image),
    { service = o.service, image = o.image, upstream = upstream, previous = previous and previous.image })
  return { service = o.service, container = o.service, image = o.image, url = "http://" .. upstream_of(o.port),
           upstream = upstream, previous = previous and previous.image or nil, planned = dry_run() or nil }
end

-- The state folder as an absolute path (the proxy's state file is absolute): a rollback
-- from another process and folder must find the same lock and files.
local function absolute_state_dir(service, state_dir)
  return (hoist.proxy.state_file(service, state_dir):gsub("/proxy/[^/]+$", ""))
end

--- Deploys `image` as `service` behind 127.0.0.1:port, holding the service's deploy lock
--- (waiting up to lock_timeout for another run's deploy, then conflict). Raises
--- rollout_failed when the new container does not become healthy (it is removed; what
--- served before keeps serving), conflict when the port or the name belongs to something
--- else.
---@param o hoist.targets.local.DeployOptions
---@return hoist.targets.local.DeployResult
function M.deploy(o) -- checked by hoist.targets.define: defaults filled in
  local run_id = o.run or (o.ctx and o.ctx.run and o.ctx.run.id) or hoist.run.id
  local state_dir = absolute_state_dir(o.service, o.state_dir)
  local held = lock(o.service, run_id, state_dir, o.lock_timeout)
  return require("hoist.targets.lock").holding(held, deploy, o, run_id, state_dir)
end

--- The deploy lock of a service (hoist.targets.lock in the state folder). container@1 holds
--- it from its deploy stage until the run is over, rollback included.
---@param opts hoist.targets.LockOptions
---@return hoist.targets.Lock
function M.lock(opts)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.target = M.name
  o.state_dir = absolute_state_dir(o.service, o.state_dir)
  return locks.acquire(o)
end

---------------------------------------------------------------- inspection and teardown

---@class hoist.targets.local.Status: hoist.targets.Status
---@field proxy hoist.proxy.State
---@field containers table[] docker ps rows of the service's containers
---@field active? table the row of the container named after the service

--- What runs for a service: its proxy and its containers. Changes nothing.
---@param opts {service: string, state_dir?: string}
---@return hoist.targets.local.Status
function M.status(opts)
  if type(opts) ~= "table" or type(opts.service) ~= "string" then
    fail("invalid_argument", "targets.local.status: expected {service=}")
  end
  local state = hoist.proxy.state_file(opts.service, opts.state_dir)
  local rows = hoist.docker.ps { all = true, filters = { label = L_SERVICE .. "=" .. opts.service } }
  local active
  for _, r in ipairs(rows) do
    if r.name == opts.service then active = r end
  end
  local proxy = hoist.proxy.status { state = state }
  return { service = opts.service, proxy = proxy, containers = rows, active = active,
           serving = proxy.running == true and active ~= nil, image = active and active.image or nil,
           url = proxy.listen and ("http://" .. proxy.listen) or nil }
end

-- The files of the service's secret folder (see M.secret_dir).
local function secret_files(service, state_dir)
  local dir = M.secret_dir(service, state_dir)
  local out = {}
  for _, name in ipairs(hoist.fs.list(dir)) do out[#out + 1] = dir .. "/" .. name end
  return out, dir
end

---@class hoist.targets.local.RemoveResult
---@field removed string[] names of the containers removed (dry-run: that would be)
---@field files string[] the 0600 environment files removed (dry-run: that would be)
---@field proxy_stopped boolean (dry-run: would be)
---@field planned? boolean dry-run: nothing was removed

--- Takes a service down: stops its proxy, removes all its containers and the 0600 files that
--- kept their environment for a rollback. Holds the service's deploy lock while it works.
--- Idempotent. Under dry-run it plans each step and removes nothing.
---@param opts {service: string, state_dir?: string, lock_timeout?: number}
---@return hoist.targets.local.RemoveResult
function M.remove(opts)
  local st = M.status(opts)
  local state_dir = absolute_state_dir(opts.service, opts.state_dir)
  local held = lock(opts.service, hoist.run.id or "teardown", state_dir, opts.lock_timeout)
  return require("hoist.targets.lock").holding(held, function()
    local planned = dry_run()
    local stopped = false
    if st.proxy.running then stopped = hoist.proxy.stop { state = st.proxy.state_file }.stopped == true or planned end
    local removed = {}
    for _, row in ipairs(st.containers) do
      hoist.docker.rm { name = row.id, force = true, missing_ok = true }
      removed[#removed + 1] = row.name
    end
    local files, dir = secret_files(opts.service, state_dir)
    for _, path in ipairs(files) do
      if planned then
        hoist.pipeline.plan { action = "file.remove", message = "remove " .. path, path = path }
      else
        local gone, why = os.remove(path)
        if not gone then fail("internal", ("cannot remove %s: %s"):format(path, tostring(why)), { path = path }) end
      end
    end
    if not planned and #files > 0 then os.remove(dir) end
    return { removed = removed, files = files, proxy_stopped = stopped, planned = planned or nil }
  end)
end

return require("hoist.targets").define(M)
