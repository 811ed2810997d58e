--- hoist.targets.appservice: deploys a container to an Azure App Service web app (Web App for
--- Containers), by digest, through a staging slot.
---
--- A first deploy creates the resource group (when missing), the Linux plan and the site
--- running the image. Later deploys put the new version on the slot `slot` (default
--- "staging": production settings merged with the deploy's, `linuxFxVersion =
--- DOCKER|repository@digest`), wait until App Service reports that container started (a
--- container that does not answer on the port App Service waits on fails here, naming
--- WEBSITES_PORT and the image's EXPOSE), check that the digest that started is the one
--- deployed ("I pushed a new image but nothing changed"), verify the slot's hostname, swap
--- the slot into production (the running container moves: no cold start) and verify the
--- production hostname and digest. `slot = ""` updates production in place instead (App
--- Service starts the new container beside the old one, but a failed start takes the site
--- down until the rollback). `update = "webhook"` runs the repository's tag and POSTs the
--- slot's CD webhook instead of setting a digest: the digest check then tells whether the tag
--- really moved.
---
--- Compensations (named, JSON arguments, journaled before each change; `hoist rollback <id>`
--- runs them from a later process): "appservice.restore" puts a site's or slot's previous
--- container and app settings back (settings holding secrets wait in a 0600 file of the
--- state folder, never in the journal), or deletes what the deploy created;
--- "appservice.swap_back" swaps production back while it still runs this run's image.
---
--- Where it works (credential, subscription, the resource group created in `location` when
--- missing, Microsoft.Web registered) and the deploy lock come from hoist.targets.azure: the
--- lock is ARM-side (a tag on the resource group), so two hosts cannot deploy one app at once.
local M = {}

M.name = "appservice"

local azt = require "hoist.targets.azure"
local util = require "hoist.util"
local fail, dry_run = util.fail, util.dry_run

--- The options only this target takes, with those of every Azure target (hoist.targets.azure;
--- App Service pulls with the site's identity through `managed_identity`, not `registry_identity`).
M.options = azt.merge_options({
  plan = { type = "string", description = "App Service plan name or id (default <name>-plan, created when missing)" },
  sku = { type = "string", default = "B1", description = "SKU of a plan hoist creates" },
  slot = { type = "string", default = "staging", description = "Deployment slot to stage on, then swap; \"\" updates production in place" },
  update = { type = "string", default = "config", allowed = { "config", "webhook" },
             description = "config: set linuxFxVersion to the digest; webhook: run the tag and POST the CD webhook" },
  registry_server = { type = "string", description = "Registry App Service pulls from (default: the image's)" },
  registry_username = { type = "string", description = "Registry user (DOCKER_REGISTRY_SERVER_USERNAME)" },
  registry_password = { type = "string", secret = true, description = "Registry password or token (DOCKER_REGISTRY_SERVER_PASSWORD)" },
  managed_identity = { type = "boolean", description = "Pull with the site's managed identity (acrUseManagedIdentityCreds)" },
  start_time_limit = { type = "number", integer = true, min = 1, max = 1800, description = "WEBSITES_CONTAINER_START_TIME_LIMIT in seconds (App Service: 230)" },
}, { "registry_identity" })

--- The named rollback actions deploy registers.
M.compensations = { "appservice.restore", "appservice.swap_back" }

local function svc() return require "hoist.azure.appservice" end

local function ref_of(o, slot)
  return { resource_group = o.resource_group, name = o.name, subscription = o.subscription, endpoint = o.endpoint,
           credential = o.credential, slot = (slot and slot ~= "") and slot or nil }
end

-- The compensation's arguments (JSON-safe: azt.journal) for the site or slot `slot`.
local function journal_args(o, slot, extra)
  local a = {}
  for k, v in pairs(o.journal) do a[k] = v end
  a.slot = (slot and slot ~= "") and slot or false
  for k, v in pairs(extra) do a[k] = v end
  return a
end
-- The site or slot a compensation works on, in this process (credential: the journaled
-- source name, else the chain).
local function from_journal(a)
  return { resource_group = a.resource_group, name = a.name, subscription = a.subscription,
           credential = azt.credential(a.credential), slot = a.slot or nil, endpoint = a.endpoint }
end

local function where(r) return r.slot and (r.name .. "/" .. r.slot) or r.name end

---------------------------------------------------------------- snapshots

local function snapshot_file(state_dir, name, run, slot)
  return ("%s/appservice/%s/%s.%s.json"):format(state_dir, name, run, slot or "production")
end

-- What restores a site or slot: its container and its app settings. The settings go to a 0600
-- file (they hold the registry password and app secrets); the journal gets its path.
local function snapshot(r, state_dir, run)
  local c = svc().container(r)
  local settings = svc().settings(r)
  local snap = { image = c.image, managed_identity = c.managed_identity, command = c.command, settings_file = false }
  if dry_run() then return snap end
  local path = snapshot_file(state_dir, r.name, run, r.slot)
  hoist.fs.mkdir(path:match("^(.*)/"), { mode = "0700" })
  hoist.fs.write_file(path, hoist.json.encode { settings = settings }, { mode = "0600" })
  snap.settings_file = path
  return snap
end

local function read_snapshot_settings(prev)
  if not prev.settings_file then return nil end
  local text = hoist.fs.read_file(prev.settings_file, { missing_ok = true })
  if not text then
    fail("rollout_failed", ("cannot restore the previous app settings: they were kept in %s, which is gone")
      :format(prev.settings_file), { file = prev.settings_file })
  end
  local settings = hoist.json.decode(text).settings or {}
  for k, v in pairs(settings) do
    -- a rollback may run in a later process: register them again before any output
    if type(v) == "string" and #v >= 4 and svc().secret_name(k) then hoist.secret(v) end
  end
  return settings
end

---------------------------------------------------------------- compensations

-- Runs `change` once no operation runs on the site: a run cancelled while its swap was polled
-- leaves the swap running on App Service's side, which refuses every change of the site and its
-- slots (409 "... another operation is in progress ...") until it ends, and shows it in no GET:
-- hoist.azure.when_settled waits, saying so, and runs `change` again, which reads afresh.
local function when_settled(a, r, change)
  return require("hoist.azure").when_settled({ what = "web app " .. where(r), timeout = a.wait_timeout,
                                               get = function() return svc().get(r) end }, change)
end

-- Puts back the previous container and settings of a site or slot (or deletes what the run
-- created). Leaves alone a site another run has deployed since.
local function restore_now(a, r)
  local s = svc()
  if not a.previous then
    local site = s.get(r)
    if site then
      s.delete(r)
      hoist.log.event("appservice.restored", ("deleted %s, which this run created"):format(where(r)), { site = where(r) })
    end
    return
  end
  local now = s.get(r) and s.container(r) or nil
  if not now then
    hoist.log.warn(("not restoring %s: it no longer exists"):format(where(r)))
    return
  end
  if now.image ~= a.image and now.image ~= a.previous.image then
    hoist.log.event("appservice.superseded", ("not restoring %s: it runs %s, deployed since by another run")
      :format(where(r), now.image), { site = where(r), image = now.image })
    return
  end
  local settings = read_snapshot_settings(a.previous)
  local cursor = s.log_cursor(r)
  if settings then
    local set, remove = {}, {}
    local current = s.settings(r)
    for k, v in pairs(settings) do set[k] = v end
    for k in pairs(current) do if settings[k] == nil then remove[#remove + 1] = k end end
    local rr = ref_of(r, r.slot)
    rr.set, rr.remove = set, remove
    s.update_settings(rr)
  end
  local changed = now.image ~= a.previous.image
  if changed then
    local rr = ref_of(r, r.slot)
    rr.image, rr.managed_identity, rr.command = a.previous.image, a.previous.managed_identity, a.previous.command
    s.set_container(rr)
  end
  if changed and a.previous.image ~= "" and a.wait ~= false then
    local w = ref_of(r, r.slot)
    w.image, w.after, w.timeout = a.previous.image, cursor, a.wait_timeout
    s.wait_started(w)
  end
  hoist.log.event("appservice.restored", ("%s runs %s again"):format(where(r), a.previous.image),
    { site = where(r), image = a.previous.image })
end

local function restore(a)
  local r = from_journal(a)
  return when_settled(a, r, function() return restore_now(a, r) end)
end

-- Swaps production back with the slot while production still runs this run's image. First the
-- slot's swap configuration is reset: a change App Service refuses while a swap is in flight
-- (this run's, cancelled while polled, shows in no GET: production still runs the previous
-- image until it ends), so when_settled waits for it; and it cancels a swap with preview that
-- would hold the slot. Only then does production's image say whether this run's swap happened.
local function swap_back(a)
  local r = from_journal(a)
  local s = svc()
  local prod, slot = ref_of(r), ref_of(r, r.slot)
  return when_settled(a, prod, function()
    if s.get(slot) then s.reset_swap(slot) end
    local now = s.get(prod) and s.container(prod) or nil
    if not now or now.image ~= a.image then
      hoist.log.event("appservice.superseded", ("not swapping %s back: production runs %s, not this run's %s")
        :format(r.name, now and now.image or "nothing", a.image), { site = r.name })
      return
    end
    s.swap(slot)
    hoist.log.event("appservice.swapped_back", ("%s: production runs %s again (swapped back from slot %s)")
      :format(r.name, tostring(a.previous_image), r.slot), { site = r.name, slot = r.slot })
  end)
end

hoist.pipeline.action("appservice.restore", function(a) azt.holding(M.name, a, restore, a) end, { args = azt.journal_args {
  slot = { type = "string|boolean", required = true }, previous = { type = "table|boolean", required = true },
  image = "string", wait = "boolean", wait_timeout = "number" } })
hoist.pipeline.action("appservice.swap_back", function(a) azt.holding(M.name, a, swap_back, a) end, { args = azt.journal_args {
  slot = { type = "string", required = true }, image = { type = "string", required = true }, previous_image = "string" } })

---------------------------------------------------------------- deploy

local test_pause = azt.test_pause

local function verify_url(url, path, verify, name)
  if dry_run() then return end
  verify = verify or {}
  return hoist.verify.http { name = ("GET %s%s (%s)"):format(url, path, name), url = url .. path, expect_status = 200,
                             retries = verify.retries or 30, interval = verify.interval or 1, timeout = verify.timeout or 10 }
end

-- The started container must be the deployed digest, not an older one.
local function check_digest(launch, digest, r, image)
  if dry_run() or not digest or launch.planned then return end
  if launch.digest ~= digest then
    fail("rollout_failed", ("%s started %s with digest %s, not %s, the digest deployed: the tag App Service pulls "
      .. "did not move (push it, or deploy by digest), so nothing changed"):format(where(r), launch.image,
      tostring(launch.digest), digest), { running = launch.digest, deployed = digest, image = image })
  end
end

-- The app settings this deploy sets, and those whose values are secrets.
local function deploy_settings(o, ref)
  local set = { WEBSITES_PORT = tostring(o.container_port) }
  if o.start_time_limit then set.WEBSITES_CONTAINER_START_TIME_LIMIT = tostring(math.floor(o.start_time_limit)) end
  for k, v in pairs(o.env or {}) do set[k] = tostring(v) end
  local secret = {}
  for k, v in pairs(o.secret_env or {}) do secret[k] = hoist.secret(tostring(v)) end
  if o.registry_username or o.registry_password then
    require("hoist.azure.pull").check("targets.appservice", o) -- kept for every later pull: must not expire
    for k, v in pairs(svc().registry_settings { server = o.registry_server or ref.registry,
                                                username = o.registry_username, password = o.registry_password }) do
      if k == svc().REGISTRY_PASSWORD then secret[k] = v else set[k] = v end
    end
  end
  return set, secret
end

local function first_deploy(o, r, image, digest, on_rollback)
  local s = svc()
  local plan = o.plan or (o.name .. "-plan")
  if not plan:find("/", 1, true) then
    s.plan { resource_group = o.resource_group, name = plan, location = o.location, sku = o.sku,
             subscription = o.subscription, credential = o.credential, endpoint = o.endpoint }
  end
  local set, secret = deploy_settings(o, image)
  on_rollback("appservice.restore", journal_args(o, nil, { previous = false, image = image.run, wait = false }))
  local c = ref_of(o)
  c.location, c.plan, c.image, c.settings, c.secret_settings = o.location, plan, image.run, set, secret
  c.managed_identity, c.pull_identity, c.tags = o.managed_identity, o.pull_identity, o.labels
  s.create(c)
  local w = ref_of(o)
  w.image, w.timeout = image.run, o.start_time_limit and (o.start_time_limit + s.defaults.pull_margin)
  local launch = s.wait_started(w)
  check_digest(launch, digest, r, image.run)
  verify_url(s.url(r), o.health_path, o.verify, r.name)
end

-- Stages the new version on `r` (a slot, or production in place) and waits for its start.
local function stage(o, r, image, digest, on_rollback, creating_slot, merged_from)
  local s = svc()
  local set, secret = deploy_settings(o, image)
  local prev = (not creating_slot) and snapshot(r, o.state_dir, o.run) or false
  on_rollback("appservice.restore", journal_args(o, r.slot, { previous = prev, image = image.run }))
  local cursor = (not creating_slot) and s.log_cursor(r) or nil
  if creating_slot then
    -- a new slot gets production's settings with the deploy's on top (a swap exchanges them)
    local base = merged_from or {}
    local all, secret_all = {}, {}
    for k, v in pairs(base) do
      if s.secret_name(k) then secret_all[k] = v else all[k] = v end
    end
    for k, v in pairs(set) do all[k] = v end
    for k, v in pairs(secret) do secret_all[k] = v end
    local c = ref_of(o, r.slot)
    c.location, c.plan, c.image, c.settings, c.secret_settings = o.location, o.plan or (o.name .. "-plan"), image.run, all, secret_all
    c.managed_identity, c.pull_identity = o.managed_identity, o.pull_identity
    s.create(c)
  else
    local u = ref_of(o, r.slot)
    u.set, u.secret = set, secret
    s.update_settings(u)
    local current = s.container(r)
    if current.image ~= image.run or (o.managed_identity ~= nil and current.managed_identity ~= o.managed_identity)
        or (o.pull_identity and current.pull_identity ~= o.pull_identity.client_id) then
      local c = ref_of(o, r.slot)
      c.image, c.managed_identity, c.pull_identity = image.run, o.managed_identity, o.pull_identity
      s.set_container(c)
    end
    if o.update == "webhook" then s.webhook(ref_of(o, r.slot)) end
  end
  test_pause("HOIST_TEST_PAUSE_IN_DEPLOY", "with " .. where(r) .. " starting " .. image.run)
  local w = ref_of(o, r.slot)
  w.image, w.after = image.run, cursor
  w.timeout = o.start_time_limit and (o.start_time_limit + s.defaults.pull_margin) or nil
  local launch = s.wait_started(w)
  check_digest(launch, digest, r, image.run)
  verify_url(s.url(r), o.health_path, o.verify, where(r))
  return prev
end

-- The image as App Service will run it: by digest, or (webhook) by tag; and its digest.
local function what_to_run(o)
  local ref = hoist.image.parse(o.image)
  local digest = ref.digest
  if not digest and not dry_run() then
    local auth = (o.registry_username or o.registry_password)
      and { username = o.registry_username, password = o.registry_password } or nil
    digest = hoist.registry.resolve { image = o.image, auth = auth }.digest
  end
  local run
  if o.update == "webhook" then
    if not ref.tag then
      fail("invalid_argument", ("targets.appservice: update = \"webhook\" needs an image with a tag (repository:tag[@digest]), got %s")
        :format(o.image), { option = "image" })
    end
    run = ref.repository .. ":" .. ref.tag
  else
    run = digest and (ref.repository .. "@" .. digest) or o.image
  end
  return { run = run, registry = ref.registry }, digest
end

local function deploy(o)
  o.journal = azt.journal(o) -- before the credential is resolved: the journal keeps only its source name
  local where_ = azt.prepare("targets.appservice", o, "Microsoft.Web")
  o.credential, o.subscription, o.location = where_.credential, where_.subscription, o.location or where_.location
  o.journal.subscription = o.subscription
  local s = svc()
  local on_rollback = function(action, args) if o.ctx then o.ctx:on_rollback(action, args) end end
  local prod = ref_of(o)
  if not (o.registry_username or o.registry_password) and o.managed_identity == nil then
    -- no pull credential given: one that never expires where the deployer may make it
    local id, how = require("hoist.azure.pull").ensure_identity("targets.appservice", o, where_)
    o.pull_identity = id and { id = id.id, client_id = id.client_id } or nil
    hoist.log.event("azure.pull_credential", ("%s: pulls %s with %s"):format(o.name, o.image, id and how
      or ("the registry settings it has (as before): " .. how)), { name = o.name, identity = id and id.id })
  end
  local image, digest = what_to_run(o)
  local site = s.get(prod)
  local previous
  if not site then
    first_deploy(o, prod, image, digest, on_rollback)
  elseif o.slot == "" then
    previous = s.container(prod).image
    stage(o, prod, image, digest, on_rollback)
    previous = previous ~= "" and previous or nil
  else
    previous = s.container(prod).image
    local slot = ref_of(o, o.slot)
    local exists = s.get(slot) ~= nil
    stage(o, slot, image, digest, on_rollback, not exists, (not exists) and s.settings(prod) or nil)
    if o.pull_identity then
      -- after the swap production runs the slot's config, which pulls with this identity
      local a = ref_of(o)
      a.identity = o.pull_identity.id
      s.assign_identity(a)
    end
    on_rollback("appservice.swap_back", journal_args(o, o.slot, { image = image.run, previous_image = previous }))
    s.swap(slot)
    test_pause("HOIST_TEST_PAUSE_AFTER_SWITCH", "after the swap of " .. where(slot))
    if not dry_run() then
      local running = s.running(prod)
      if digest and (not running or running.digest ~= digest) then
        fail("rollout_failed", ("after the swap, production of %s runs %s, not the deployed %s"):format(o.name,
          running and tostring(running.digest) or "nothing", digest), { running = running, deployed = digest })
      end
    end
    verify_url(s.url(prod), o.health_path, o.verify, o.name)
  end
  hoist.log.event("appservice.deployed", ("%s%s %s %s (%s)"):format(dry_run() and "dry run: " or "", o.name,
    dry_run() and "would serve" or "serves", image.run, s.url(prod)), { name = o.name, image = image.run, digest = digest })
  return { service = o.service, url = s.url(prod), image = image.run, digest = digest, previous = previous,
           planned = dry_run() or nil }
end

---@class hoist.targets.appservice.DeployOptions: hoist.targets.DeployOptions
---@field resource_group string
---@field name? string web app name (default service)
---@field location? string
---@field subscription? string
---@field credential? string|hoist.azure.Credential a source name or a credential (default: the chain)
---@field endpoint? string the Resource Manager endpoint
---@field plan? string
---@field sku? string
---@field slot? string default "staging"; "" updates production in place
---@field update? "config"|"webhook"
---@field registry_server? string
---@field registry_username? string
---@field registry_password? string
---@field managed_identity? boolean
---@field start_time_limit? number

---@class hoist.targets.appservice.DeployResult: hoist.targets.DeployResult
---@field digest? string the digest that serves

--- Deploys `image` to the web app, holding its ARM-side deploy lock. Raises rollout_failed
--- when the container does not start (naming WEBSITES_PORT and EXPOSE when it did not answer
--- on the port), when the digest that started is not the one deployed, or when the
--- hostname's health check fails; the compensations registered on `ctx` undo what changed.
---@param opts hoist.targets.appservice.DeployOptions
---@return hoist.targets.appservice.DeployResult
function M.deploy(opts)
  local o = azt.deploy_options("hoist.targets.appservice.deploy", opts, M.options)
  return azt.holding(M.name, o, deploy, o)
end

--- The ARM-side deploy lock of the web app (hoist.targets.azure.lock: a tag on its resource group).
---@type fun(opts: hoist.targets.azure.LockOptions): hoist.targets.Lock
M.lock = azt.lock_of(M.name)

---@class hoist.targets.appservice.Status: hoist.targets.Status
---@field digest? string the digest of the container that started last
---@field state? string the site's state ("Running", "Stopped")
---@field slot_image? string what the staging slot is configured to run

--- What the web app runs now. Changes nothing.
---@param opts {service: string, resource_group: string, name?: string, slot?: string, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string}
---@return hoist.targets.appservice.Status
function M.status(opts)
  local r = ref_of(azt.context("targets.appservice.status", opts))
  local s = svc()
  local site = s.get(r)
  if not site then return { service = opts.service, serving = false } end
  local c = s.container(r)
  local running = s.running(r)
  return { service = opts.service, serving = site.properties.state == "Running" and running ~= nil,
           image = c.image, digest = running and running.digest or nil, state = site.properties.state,
           url = s.url(r) }
end

--- Deletes the web app and its slot (the plan stays: other apps may share it), holding the
--- deploy lock. Idempotent.
---@param opts {service: string, resource_group: string, name?: string, slot?: string, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string, lock_timeout?: number}
---@return {removed: string[], planned?: boolean}
function M.remove(opts)
  return azt.removing(M.name, opts, function(c)
    local s, removed = svc(), {}
    local r, slot = ref_of(c), ref_of(c, opts.slot or "staging")
    if s.get(slot) then s.delete(slot) removed[#removed + 1] = where(slot) end
    if s.get(r) then s.delete(r) removed[#removed + 1] = r.name end
    return { removed = removed, planned = dry_run() or nil }
  end)
end

-- Options a script may pass that are not parameters (an ARM endpoint, a credential object),
-- and the checks before a deploy (credential, subscription, resource group, names).
M.extra_options = azt.extra_options
--- The Azure actions a deploy with `o` performs in the resource group (the preflight checks
--- the deployer holds them): the site's read, write, config (container, app settings) and
--- delete (the rollback of a first deploy); with a slot, the same on the slot and its swap;
--- the plan's write when hoist names it (created when missing).
---@param o table the deploy options
---@return string[]
function M.actions(o)
  local out = { "Microsoft.Web/sites/read", "Microsoft.Web/sites/write", "Microsoft.Web/sites/delete",
                "Microsoft.Web/sites/config/write", "Microsoft.Web/sites/config/list/action",
                "Microsoft.Web/sites/containerlogs/action" }
  if o.slot ~= "" then
    for _, a in ipairs { "read", "write", "delete", "config/write", "config/list/action", "containerlogs/action",
                         "slotsswap/action" } do
      out[#out + 1] = "Microsoft.Web/sites/slots/" .. a
    end
  end
  if not (o.plan or ""):find("/", 1, true) then
    out[#out + 1] = "Microsoft.Web/serverfarms/read"
    out[#out + 1] = "Microsoft.Web/serverfarms/write"
  end
  return out
end

M.preflight = azt.preflight_of(M.name, "Microsoft.Web", M.actions)
return require("hoist.targets").define(M)
