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
--- them from a new process): "local.remove_candidate" and "local.restore".
local M = {}

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
  local ports = info and info.NetworkSettings and info.NetworkSettings.Ports or {}
  local bindings = ports[("%d/tcp"):format(container_port)]
  if type(bindings) ~= "table" then return nil end
  for _, b in ipairs(bindings) do
    if b.HostPort and b.HostPort ~= "" then return tonumber(b.HostPort) end
  end
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
  local ok, image = pcall(hoist.docker.inspect, { name = info.Image, type = "image" })
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

local function positive_int(v, field, max)
  if type(v) ~= "number" or v ~= math.floor(v) or v < 1 or v > (max or 65535) then
    fail("invalid_argument", ("targets.local: %s must be a whole number from 1 to %d, got %s"):format(field,
      max or 65535, tostring(v)))
  end
  return v
end

local function check_options(o)
  local fname = "hoist.targets.local.deploy"
  if type(o) ~= "table" then util.check_opts(fname, o, {}) end
  if type(o.service) ~= "string" or not o.service:match("^[%w][%w_.%-]*$") then
    fail("invalid_argument", ("targets.local: service must be a container name ([A-Za-z0-9][A-Za-z0-9_.-]*), got %s")
      :format(tostring(o.service)))
  end
  util.check_opt(fname, "image", o.image, { type = "string", required = true })
  if o.image == "" then fail("invalid_argument", fname .. ": option 'image' must not be empty") end
  positive_int(o.port, "port")
  positive_int(o.container_port, "container_port")
  if type(o.health_path) ~= "string" or o.health_path:sub(1, 1) ~= "/" then
    fail("invalid_argument", ("targets.local: health_path must start with '/', got %s"):format(tostring(o.health_path)))
  end
  util.check_opt(fname, "env", o.env, "table")
  util.check_opt(fname, "labels", o.labels, "table")
  util.check_opt(fname, "verify", o.verify, "table")
  if util.check_opt(fname, "drain", o.drain, "number") and o.drain < 0 then
    fail("invalid_argument", "targets.local: drain must be a number of seconds >= 0")
  end
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

-- The journal is scrubbed of secrets, so an environment holding one cannot travel in the
-- compensation's arguments: it is kept in a 0600 file of the state folder instead (docker
-- itself keeps the same values in its container config).
local function keep_secret_env(prev, o, run_id)
  if not prev or dry_run() then return prev end
  local keys = secret_keys(prev.env)
  if #keys == 0 then return prev end
  local dir = (o.state_dir or hoist.run.state_dir or ".hoist") .. "/local"
  local path = ("%s/%s-%s.env.json"):format(dir, o.service, run_id)
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
  local ok_ref, ref_info = pcall(hoist.docker.inspect, { name = prev.image, type = "image" })
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

-- Puts the previous container back behind the service port (or, when the service did not
-- exist before, takes the front down). Safe to run again at any point.
local function restore(args)
  local state, prev = args.proxy_state, args.previous
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

hoist.pipeline.action("local.remove_candidate", function(args) remove_candidate(args) end)
hoist.pipeline.action("local.restore", function(args) restore(args) end)

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
local function test_pause(variable, what)
  local seconds = tonumber(os.getenv(variable) or "")
  if seconds and seconds > 0 and not dry_run() then
    hoist.log.warn(("%s: pausing %gs %s"):format(variable, seconds, what))
    hoist.sleep(seconds)
  end
end

---@class hoist.targets.local.DeployOptions
---@field service string service (and container) name
---@field image string what to run, ideally repository@digest
---@field port integer the service port on 127.0.0.1
---@field container_port integer the port the app listens on inside the container
---@field health_path string GET path that answers 200 when the app is healthy
---@field env? table<string, string> container environment; values registered as secrets (hoist.secret) stay out of the journal: a rollback reads them from a 0600 file in the state folder
---@field labels? table<string, string> more container labels
---@field verify? {retries?: integer, interval?: number, timeout?: number} the candidate's health check
---@field drain? number seconds the old container keeps its open connections after the switch (default 2)
---@field ctx? hoist.StageContext registers the compensations (without it: none)
---@field run? string run id (default ctx.run.id or hoist.run.id)
---@field state_dir? string where the proxy state lives (default hoist.run.state_dir)

---@class hoist.targets.local.DeployResult
---@field service string
---@field container string the serving container's name (= service)
---@field image string
---@field url string http://127.0.0.1:PORT
---@field upstream string the container's own loopback address
---@field previous? string the image that served before
---@field planned? boolean dry-run

--- Deploys `image` as `service` behind 127.0.0.1:port. Raises rollout_failed when the new
--- container does not become healthy (it is removed; what served before keeps serving),
--- conflict when the port or the name belongs to something else.
---@param o hoist.targets.local.DeployOptions
---@return hoist.targets.local.DeployResult
function M.deploy(o)
  check_options(o)
  local ctx = o.ctx
  local run_id = o.run or (ctx and ctx.run and ctx.run.id) or hoist.run.id
  local state = hoist.proxy.state_file(o.service, o.state_dir)
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
  previous = keep_secret_env(previous, o, run_id)
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
  local keys = secret_keys(o.env)
  if #keys > 0 then labels[L_SECRET_ENV] = table.concat(keys, ",") end
  on_rollback("local.remove_candidate", { service = o.service, run = run_id, name = candidate, proxy_state = state })
  hoist.docker.run { image = o.image, name = candidate, ports = { tostring(o.container_port) }, env = o.env or {},
                     labels = labels }
  local cand_info = not dry_run() and inspect(candidate) or nil
  local cand_port = cand_info and host_port(cand_info, o.container_port)
  if not dry_run() and not cand_port then
    hoist.docker.rm { name = candidate, force = true, missing_ok = true }
    fail("rollout_failed", ("container %s publishes no port for %d"):format(candidate, o.container_port))
  end
  test_pause("HOIST_TEST_PAUSE_IN_DEPLOY", "with candidate " .. candidate .. " running")

  if not dry_run() then
    local ok, err = pcall(check_health, cand_port, o.health_path, o.verify, candidate)
    if not ok then
      if hoist.is_error(err, "cancelled") then error(err, 0) end
      local _, logs = pcall(hoist.docker.logs, { name = candidate, tail = 20 })
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
                                 candidate = candidate, previous = previous or false, verify = o.verify })
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

---------------------------------------------------------------- inspection and teardown

--- What runs for a service: its proxy and its containers.
---@param opts {service: string, state_dir?: string}
---@return {service: string, proxy: hoist.proxy.State, containers: table[], active?: table}
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
  return { service = opts.service, proxy = hoist.proxy.status { state = state }, containers = rows, active = active }
end

--- Takes a service down: stops its proxy and removes all its containers. Idempotent.
---@param opts {service: string, state_dir?: string}
---@return {removed: string[], proxy_stopped: boolean}
function M.remove(opts)
  local st = M.status(opts)
  local stopped = false
  if st.proxy.running then stopped = hoist.proxy.stop { state = st.proxy.state_file }.stopped end
  local removed = {}
  for _, r in ipairs(st.containers) do
    hoist.docker.rm { name = r.id, force = true, missing_ok = true }
    removed[#removed + 1] = r.name
  end
  return { removed = removed, proxy_stopped = stopped }
end

return M
