--- hoist.azure.target: what the Azure targets (aci, appservice, containerapp) share.
---
--- `options` are the parameter specs every Azure target merges into its own `options` (one
--- name each: subscription, resource_group, location, name, credential, registry_identity);
--- `prepare` resolves the credential and the subscription and makes sure the resource group
--- exists and the resource provider is registered; `lock` is the ARM-side deploy lock.
---
--- The lock is a tag on the RESOURCE GROUP, `hoist-lock.<target>.<name> =
--- <run>:<host>:<pid>:<expiry>`, written with PATCH + If-Match on the group's ETag: of two
--- hosts that read the same ETag, one PATCH wins and the other gets 412 and reads again. The
--- group rather than the resource carries it because the resource comes and goes inside one
--- deploy (an ACI recreate deletes it; ACI's PUT replaces its tags), and a lock must outlive
--- both. Every write is read back, so a server that ignores If-Match still cannot give the
--- lock to two holders that both look at it after writing. See docs/azure.md, "The deploy lock".
local util = require "hoist.util"

local fail = util.fail

local M = {}

--- Policy: a lock not renewed for `ttl` seconds is taken over (its holder died); a holder
--- renews it every ttl/3 seconds while it deploys, so a slow deploy keeps it. `settle`: where
--- the group has no ETag, seconds between a write and its read-back (a rival that read the
--- same state writes within a round trip; the later write wins and the earlier sees it).
M.defaults = { ttl = 600, interval = 2, say_every = 10, write_attempts = 20, settle = 1 }

--- The options every Azure target takes besides the common ones (hoist.targets.options).
M.options = {
  subscription = { type = "string", env = "AZURE_SUBSCRIPTION_ID",
                   pattern = "%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x",
                   hint = "a subscription id (a GUID: 8-4-4-4-12 hex digits)",
                   description = "Azure subscription id (default: AZURE_SUBSCRIPTION_ID, else the subscriptionId of AZURE_CREDENTIALS)" },
  resource_group = { type = "string", required = true, max_length = 90, pattern = "[%w_%(%)%.%-]*[%w_%(%)%-]",
                     hint = "a resource group name (letters, digits, '_', '(', ')', '.', '-'; not ending in '.')",
                     description = "Azure resource group (created in location when missing); required for an Azure target" },
  location = { type = "string", description = "Azure region (e.g. westeurope); default: the resource group's" },
  name = { type = "string", description = "Azure resource name (default: the service name)" },
  credential = { type = "string", description = "Azure credential source (client_secret, workload_identity, oidc, managed_identity, az_cli; default: the first that applies)" },
  registry_identity = { type = "string", description = "Managed identity that pulls the image instead of registry credentials: a user-assigned identity's resource id (containerapp also: \"system\")" },
}

--- Merges the Azure options into a target's own (the target's win), leaving out those named
--- in `without` (an option the target has no use for, e.g. App Service pulls with its own
--- identity switch, not `registry_identity`).
---@param own table<string, table>
---@param without? string[]
---@return table<string, table>
function M.merge_options(own, without)
  local out = {}
  for k, v in pairs(M.options) do out[k] = v end
  for _, k in ipairs(without or {}) do out[k] = nil end
  for k, v in pairs(own or {}) do out[k] = v end
  return out
end

--- Options of every Azure target that are not parameters: the Resource Manager endpoint and
--- a credential object (hoist.azure.credential{}) in place of a source name.
M.extra_options = { endpoint = "string", credential = "string|table" }

-- Azure's naming rules of each target's resource (the Azure resource naming rules page):
-- length, characters, what may begin and end it.
local NAME_RULES = {
  aci = { min = 1, max = 63, first = "[a-z0-9]", body = "[a-z0-9%-]", last = "[a-z0-9]",
          text = "1-63 lower-case letters, digits and '-', not beginning or ending with '-'" },
  containerapp = { min = 2, max = 32, first = "[a-z]", body = "[a-z0-9%-]", last = "[a-z0-9]", no_double_dash = true,
                   text = "2-32 lower-case letters, digits and '-', beginning with a letter, ending with a letter or digit, no '--'" },
  appservice = { min = 2, max = 60, first = "[%w]", body = "[%w%-]", last = "[%w]",
                 text = "2-60 letters, digits and '-', not beginning or ending with '-'" },
}

--- What is wrong with `name` as the resource name of Azure target `target`, or nil.
---@param target string "aci", "containerapp" or "appservice"
---@param name string
---@return string?
function M.name_problem(target, name)
  local r = NAME_RULES[target]
  if not r then return nil end
  local ok = type(name) == "string" and #name >= r.min and #name <= r.max and name:sub(1, 1):match(r.first) ~= nil
    and name:sub(-1):match(r.last) ~= nil and name:match("^" .. r.body .. "*$") ~= nil
    and not (r.no_double_dash and name:find("--", 1, true))
  if ok then return nil end
  return ("must be %s (Azure's rule for a %s name), got %q"):format(r.text, target, tostring(name))
end

--- The preflight of Azure target `target` (hoist.targets.define wraps it): the resource name
--- by Azure's rule, the credential (a token is fetched), the subscription, and the resource
--- group (it exists, or `location` is given to create it). Reads only.
---@param target string
---@return fun(o: table): string[]
function M.preflight_of(target)
  return function(o)
    local what = "targets." .. target
    local name = o.name or o.service
    local problem = M.name_problem(target, name)
    if problem then
      fail("invalid_argument", ("%s: the resource name (option name, else service) %s"):format(what, problem),
        { option = o.name and "name" or "service", exit_code = 2 })
    end
    require("hoist.azure.pull").check(what, o) -- a pull secret that expires: refused before the build
    local ctx = M.context(what, o)
    local checks = { ("credential %s: a token for subscription %s"):format(ctx.credential.source or "chain", ctx.subscription) }
    local got = require("hoist.azure").resource_groups.get { name = ctx.resource_group, subscription = ctx.subscription,
                                                             credential = ctx.credential, endpoint = ctx.endpoint }
    if got then
      checks[#checks + 1] = ("resource group %s exists (%s)"):format(ctx.resource_group, tostring(got.location))
    elseif o.location then
      checks[#checks + 1] = ("resource group %s will be created in %s"):format(ctx.resource_group, o.location)
    else
      fail("invalid_argument", ("%s: resource group %s does not exist in subscription %s; give location= to create it")
        :format(what, ctx.resource_group, ctx.subscription), { resource_group = ctx.resource_group, exit_code = 2 })
    end
    return checks
  end
end

-- credentials by source name, so tokens are cached across calls of one run
local credentials = {}

--- The credential an option names: a hoist.azure.Credential as is, a source name, or nil for
--- the chain (one per source and process: its tokens are cached).
---@param c? string|hoist.azure.Credential
---@return hoist.azure.Credential
function M.credential(c)
  local azure = require "hoist.azure"
  if type(c) == "table" then return azure.credential_of("hoist.azure.target", c) end
  if c ~= nil and type(c) ~= "string" then
    fail("invalid_argument", "Azure target: option 'credential' must be a source name or a hoist.azure.credential{}")
  end
  local key = c or ""
  credentials[key] = credentials[key] or azure.credential(c and { source = c } or nil)
  return credentials[key]
end

---@class hoist.azure.target.Context
---@field credential hoist.azure.Credential
---@field subscription string
---@field resource_group string
---@field location string the group's region (or the one given)
---@field name string the Azure resource name
---@field group_id string "/subscriptions/<s>/resourceGroups/<rg>"
---@field endpoint? string the Resource Manager endpoint given (default: hoist.azure's)
---@field planned? boolean dry-run: the group would be created

local function resource_name_ok(v) return type(v) == "string" and v:match("^[%w][%w_.%-]*$") ~= nil end

--- Resolves where an Azure target works: credential, subscription, resource group (created
--- when missing, which needs `location`) and the registration of `namespace` (registered when
--- it is not, or a forbidden error saying exactly what an owner must run).
---@param what string who asks, for messages ("targets.aci")
---@param o {service?: string, name?: string, subscription?: string, resource_group?: string, location?: string, credential?: string|hoist.azure.Credential, endpoint?: string}
---@param namespace? string resource provider, e.g. "Microsoft.ContainerInstance"
---@return hoist.azure.target.Context
function M.prepare(what, o, namespace)
  local azure = require "hoist.azure"
  local ctx = M.context(what, o)
  local where = { name = ctx.resource_group, subscription = ctx.subscription, credential = ctx.credential,
                  endpoint = ctx.endpoint }
  local got = azure.resource_groups.get(where)
  if got then
    ctx.location = ctx.location or got.location
    if o.location then
      where.location = o.location
      azure.resource_groups.ensure(where)
    end
  else
    if not o.location then
      fail("invalid_argument", ("%s: resource group %s does not exist in subscription %s; give location= to create it")
        :format(what, ctx.resource_group, ctx.subscription), { resource_group = ctx.resource_group })
    end
    where.location = o.location
    ctx.planned = azure.resource_groups.ensure(where).planned
  end
  if namespace then
    azure.providers.ensure { namespace = namespace, subscription = ctx.subscription, credential = ctx.credential,
                             endpoint = ctx.endpoint, poll_interval = 1 }
  end
  return ctx
end

--- Like prepare, but changes nothing and reads nothing: the names only (status, remove).
---@param what string
---@param o table
---@return hoist.azure.target.Context
function M.context(what, o)
  local azure = require "hoist.azure"
  if type(o) ~= "table" then
    fail("invalid_argument", ("%s: expected {service=, resource_group=, ...}, got %s"):format(what, type(o)))
  end
  if type(o.resource_group) ~= "string" or o.resource_group == "" then
    fail("invalid_argument", ("%s: option 'resource_group' is required (the Azure resource group to deploy in)"):format(what),
      { option = "resource_group" })
  end
  local name = o.name or o.service
  if not resource_name_ok(name) then
    fail("invalid_argument", ("%s: the Azure resource name must be [A-Za-z0-9][A-Za-z0-9_.-]*, got %s (option name, else service)")
      :format(what, tostring(name)), { option = "name" })
  end
  local c = M.credential(o.credential)
  local sub = azure.subscription(o.subscription, c)
  return { credential = c, subscription = sub, resource_group = o.resource_group, location = o.location, name = name,
           endpoint = o.endpoint, group_id = ("/subscriptions/%s/resourceGroups/%s"):format(sub, o.resource_group) }
end

---------------------------------------------------------------- what the targets share

--- A target's deploy options, checked (hoist.targets.check_options with the target's `own`
--- specs; `endpoint` and a credential object allowed too) and completed: `name` (default: the
--- service), `run` (default: ctx's run, else hoist.run.id), `state_dir` (absolute).
---@param fname string e.g. "hoist.targets.appservice.deploy"
---@param opts any
---@param own table<string, table> the target's `options`
---@return table
function M.deploy_options(fname, opts, own)
  local o = require("hoist.targets").check_options(fname, opts, own, M.extra_options)
  o.name = o.name or o.service
  o.run = o.run or (o.ctx and o.ctx.run and o.ctx.run.id) or hoist.run.id
  o.state_dir = hoist.fs.absolute(o.state_dir or hoist.run.state_dir or ".hoist")
  return o
end

--- The JSON-safe arguments of an Azure target's compensation: what a later process (`hoist
--- rollback <id>`) needs to find the resource and take its deploy lock. A credential object
--- cannot be journaled: only a source name is kept (else the rollback uses the chain).
---@param o {service: string, name?: string, resource_group: string, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string, run?: string, lock_timeout?: number, state_dir?: string}
---@return table
function M.journal(o)
  return { service = o.service, name = o.name or o.service, resource_group = o.resource_group,
           subscription = o.subscription, credential = type(o.credential) == "string" and o.credential or nil,
           endpoint = o.endpoint, run = o.run, lock_timeout = o.lock_timeout, state_dir = o.state_dir }
end

--- Runs `fn(...)` holding the ARM-side deploy lock of `target`'s resource that `a` names
--- (deploy options or journaled arguments: service, name, run, lock_timeout, resource_group,
--- subscription, credential, endpoint; with `location` the group is created for the lock when
--- missing), released however `fn` ends.
---@param target string the target's name ("appservice")
---@param a table
---@param fn function
---@return any ...
function M.holding(target, a, fn, ...)
  local h = M.lock { target = target, service = a.service or a.name, name = a.name, run = a.run, timeout = a.lock_timeout,
                     location = a.location, resource_group = a.resource_group, subscription = a.subscription,
                     credential = a.credential, endpoint = a.endpoint }
  return require("hoist.targets.lock").holding(h, fn, ...)
end

--- A target's remove: `fn(ctx)` (ctx: hoist.azure.target.Context) holding the deploy lock,
--- run as "teardown" outside a run. When the resource group does not exist there is nothing
--- to lock nor to remove: `fn` runs without the lock (its reads find nothing).
---@param target string
---@param opts {service: string, resource_group: string, name?: string, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string, lock_timeout?: number}
---@param fn fun(ctx: hoist.azure.target.Context): any
---@return any
function M.removing(target, opts, fn)
  local c = M.context(("targets.%s.remove"):format(target), opts)
  if not util.dry_run() and not require("hoist.azure").resource_groups.get {
      name = c.resource_group, subscription = c.subscription, credential = c.credential, endpoint = c.endpoint } then
    return fn(c)
  end
  return M.holding(target, { service = opts.service, name = c.name, run = hoist.run.id or "teardown",
    lock_timeout = opts.lock_timeout, resource_group = c.resource_group, subscription = c.subscription,
    credential = c.credential, endpoint = c.endpoint }, fn, c)
end

--- The `lock(opts)` member of the Azure target `name` (hoist.targets.lock(name, opts) calls
--- it; container@1 holds it for a whole run): M.lock with `target = name`.
--- Internal: how the aci, appservice and containerapp targets get their `lock` member.
---@param name string
---@return fun(opts: hoist.azure.target.LockOptions): hoist.targets.Lock
function M.lock_of(name)
  return function(opts)
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.target = name
    return M.lock(o)
  end
end

--- The targets' test hook (hoist.targets.test_pause), here for the Azure targets.
--- Internal: see hoist.targets.test_pause.
M.test_pause = function(variable, what) return require("hoist.targets").test_pause(variable, what) end

---------------------------------------------------------------- the ARM-side deploy lock

---@class hoist.azure.target.LockOptions: hoist.targets.LockOptions
---@field resource_group string
---@field subscription? string
---@field credential? string|hoist.azure.Credential
---@field name? string the resource name (default: service)
---@field location? string creates the group when it is missing
---@field ttl? number seconds a lock lives without renewal (default 600)
---@field endpoint? string the Resource Manager endpoint (default: hoist.azure's)

local held = {} -- key -> {run=, count=, value=, group=, tag=, renewer=}

local function hostname()
  local h = os.getenv("HOSTNAME")
  if h and h ~= "" then return h end
  local text = hoist.fs.read_file("/etc/hostname", { missing_ok = true }) or ""
  return text:match("^%s*(%S+)") or "unknown-host"
end

-- "<run>:<host>:<pid>:<expiry>" -> {run, host, pid, expiry}; nil when it is not one of ours
local function parse(value)
  if type(value) ~= "string" then return nil end
  local run, host, pid, expiry = value:match("^(.+):([^:]+):(%d+):(%d+)$")
  if not run then return nil end
  return { run = run, host = host, pid = tonumber(pid), expiry = tonumber(expiry) }
end

local function describe(h)
  return ("run %s (host %s, pid %s, lock valid until %s)"):format(h.run, h.host, tostring(h.pid),
    os.date("!%Y-%m-%dT%H:%M:%SZ", h.expiry))
end

-- The group with its tags and ETag.
local function read_group(l)
  local r = require("hoist.azure").request { path = l.group, credential = l.credential, endpoint = l.endpoint,
                                             what = "read the deploy lock " .. l.tag }
  return r.body or {}, r.headers.etag
end

local function is_precondition_failed(e)
  return hoist.is_error(e, "conflict") and type(e.details) == "table" and e.details.status == 412
end

-- Writes tags[tag] = value (nil: removes it) if the group's ETag is still `etag`; true when
-- written and read back, false when another writer came first.
local function write(l, tags, etag, value)
  local t = {}
  for k, v in pairs(tags or {}) do t[k] = v end
  t[l.tag] = value
  local ok, e = pcall(require("hoist.azure").request, {
    method = "PATCH", path = l.group, credential = l.credential, endpoint = l.endpoint, body = { tags = t },
    headers = etag and { ["If-Match"] = etag } or nil, what = "write the deploy lock " .. l.tag, action = "azure.lock" })
  if not ok then
    if is_precondition_failed(e) then return false end
    error(e, 0)
  end
  -- No ETag (a server without them): last writer wins, so wait until a writer that read the
  -- same state has written too, then see who won.
  if not etag then hoist.sleep(M.defaults.settle) end
  local after = read_group(l)
  return ((after.tags or {})[l.tag]) == value
end

local function value_for(l)
  return ("%s:%s:%d:%d"):format(l.run, l.host, l.pid, os.time() + l.ttl)
end

-- One try: takes the lock (true), or returns false and the holder that has it. A holder on
-- this host whose process is gone (a kill -9) is taken over at once, as the kernel frees a
-- file lock; one elsewhere once its expiry passed.
local function try_take(l)
  local g, etag = read_group(l)
  local tags = g.tags or {}
  local holder = parse(tags[l.tag])
  local mine = holder and holder.run == l.run and holder.host == l.host and holder.pid == l.pid
  local dead = holder and not mine and holder.host == l.host and holder.pid ~= l.pid and not hoist.fs.pid_alive(holder.pid)
  if holder and not mine and not dead and holder.expiry > os.time() then return false, holder end
  local value = value_for(l)
  if not write(l, tags, etag, value) then return false, nil end
  if holder and not mine then
    hoist.log.warn(("took over the deploy lock of %s from %s, %s"):format(l.key, describe(holder),
      dead and "whose process is gone (it ended without releasing it)" or "which expired without being released"),
      { key = l.key, previous = tags[l.tag], tag = l.tag })
  end
  l.value = value
  return true
end

-- Renews (new expiry) or removes our tag; another holder's tag is left alone.
local function rewrite(l, remove)
  for _ = 1, M.defaults.write_attempts do
    local g, etag = read_group(l)
    local tags = g.tags or {}
    if tags[l.tag] ~= l.value then
      hoist.log.warn(("the deploy lock of %s is no longer ours (tag %s = %s)"):format(l.key, l.tag, tostring(tags[l.tag])),
        { key = l.key, tag = l.tag })
      return false
    end
    local value = not remove and value_for(l) or nil
    if write(l, tags, etag, value) then
      l.value = value
      return true
    end
  end
  return false
end

local function renewer(l)
  return hoist.spawn(function()
    while true do
      hoist.sleep(l.ttl / 3)
      local ok, e = pcall(rewrite, l, false)
      if not ok then hoist.log.warn(("could not renew the deploy lock of %s: %s"):format(l.key, tostring(e)), { key = l.key }) end
    end
  end)
end

local function handle(key, entry)
  local h = { key = key, run = entry.run, tag = entry.tag, resource_group = entry.resource_group, released = false }
  function h.release(self)
    if self.released then return end
    self.released = true
    entry.count = entry.count - 1
    if entry.count > 0 then return end
    if held[key] == entry then held[key] = nil end
    if entry.renewer then entry.renewer:cancel() end
    -- a lock that cannot be given back expires after ttl: say so, do not fail the run for it
    local ok, e = pcall(rewrite, entry, true)
    if not ok then
      hoist.log.warn(("could not release the deploy lock of %s (it expires on its own): %s"):format(key,
        hoist.is_error(e) and e.message or tostring(e)), { key = key, tag = entry.tag })
    else
      hoist.log.event("lock.released", ("released the deploy lock of %s"):format(key), { key = key, run = entry.run }, "debug")
    end
  end
  return h
end

--- Takes the ARM-side deploy lock of (target, Azure resource): a tag on the resource group,
--- guarded by its ETag. Waits for another holder up to `timeout` seconds (a message names its
--- run, host and pid every 10 s), takes over a lock whose holder let it expire (warning), and
--- raises conflict when the time is up. Renewed in the background while held; `release()`
--- removes the tag. Under dry-run nothing is locked.
---@param opts hoist.azure.target.LockOptions
---@return hoist.targets.Lock
function M.lock(opts)
  if type(opts) ~= "table" then fail("invalid_argument", "hoist.azure.target.lock: expected {target=, service=, resource_group=, ...}") end
  if type(opts.target) ~= "string" or not opts.target:match("^[%w][%w_.%-]*$") then
    fail("invalid_argument", ("hoist.azure.target.lock: target must be a name, got %s"):format(tostring(opts.target)))
  end
  local what = "targets." .. opts.target .. ".lock"
  local run = opts.run or hoist.run.id or "?"
  local timeout = opts.timeout == nil and 300 or opts.timeout
  if type(timeout) ~= "number" or timeout < 0 then
    fail("invalid_argument", ("%s: timeout must be a number of seconds >= 0, got %s"):format(what, tostring(timeout)))
  end
  local ctx = M.context(what, opts)
  local key = opts.target .. "/" .. ctx.name
  if util.dry_run() then return { key = key, run = run, planned = true, release = function() end } end
  local mine = held[key]
  if mine and mine.run == run then
    mine.count = mine.count + 1
    return handle(key, mine)
  end
  if opts.location then M.prepare(what, opts) end
  local l = { key = key, run = run, host = hostname(), pid = require("hoist.native.journal").self().pid,
              ttl = opts.ttl or M.defaults.ttl, tag = ("hoist-lock.%s.%s"):format(opts.target, ctx.name),
              group = ctx.group_id, resource_group = ctx.resource_group, credential = ctx.credential,
              endpoint = ctx.endpoint, count = 1 }
  local started, said = hoist.now(), nil
  while true do
    local ok, holder = try_take(l)
    if ok then
      l.renewer = renewer(l)
      held[key] = l
      hoist.log.event("lock.acquired", ("holding the deploy lock of %s (tag %s on resource group %s)"):format(key, l.tag,
        ctx.resource_group), { key = key, run = run, tag = l.tag, resource_group = ctx.resource_group }, "debug")
      return handle(key, l)
    end
    local waited = hoist.now() - started
    if not holder and waited >= timeout then
      fail("conflict", ("%s: could not write the deploy lock tag %s on resource group %s for %gs: other writers kept changing the group")
        :format(key, l.tag, ctx.resource_group, math.floor(waited + 0.5)), { key = key, tag = l.tag, waited = waited })
    end
    if holder then
      if waited >= timeout then
        fail("conflict", ("%s is being deployed by %s: waited %gs for it (lock_timeout), giving up (tag %s on resource group %s)")
          :format(key, describe(holder), math.floor(waited + 0.5), l.tag, ctx.resource_group),
          { key = key, holder = holder, tag = l.tag, resource_group = ctx.resource_group, waited = waited, timeout = timeout })
      end
      if not said or hoist.now() - said >= M.defaults.say_every then
        said = hoist.now()
        hoist.log.info(("waiting for %s, which is deploying %s (up to %gs more)"):format(describe(holder), key,
          math.floor(timeout - waited + 0.5)), { key = key, holder = holder, tag = l.tag })
      end
      hoist.sleep(math.max(0.05, math.min(M.defaults.interval, timeout - waited)))
    end
    if not holder then hoist.sleep(0.05) end -- another writer changed the group first: read it again
  end
end

return M
