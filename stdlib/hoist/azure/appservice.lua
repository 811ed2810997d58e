--- hoist.azure.appservice: App Service web apps for containers (Web App for Containers) over
--- hoist.azure.request: the plan, the site and its slots, the container settings
--- (`linuxFxVersion = DOCKER|image`, WEBSITES_PORT, the registry settings or the managed
--- identity), app settings merged without printing secret values, restart, the SCM site's CD
--- webhook, slot swap, container logs, and what the platform's docker log says about each
--- container start (which image and digest started, or why it did not). See docs/azure.md.
local util = require "hoist.util"

local fail, dry_run = util.fail, util.dry_run

local M = {}

--- Policy. App Service gives a container `WEBSITES_CONTAINER_START_TIME_LIMIT` seconds (230
--- unless set) to answer its HTTP ping; hoist waits that long plus a pull's worth.
---@class hoist.azure.appservice.Defaults
M.defaults = { start_time_limit = 230, pull_margin = 120, poll_interval = 2, sku = "B1" }

-- app settings whose values are secrets whatever the caller says (App Service keeps them in
-- plain text and lists them back with config/appsettings/list)
local SECRET_NAME = { "PASSWORD", "SECRET", "TOKEN", "KEY", "CONNECTION" }
M.REGISTRY_PASSWORD = "DOCKER_REGISTRY_SERVER_PASSWORD"

local function azure() return require "hoist.azure" end

local function enc(s) return azure().encode(s) end

local common = {
  subscription = "string", resource_group = { type = "string", required = true },
  name = { type = "string", required = true }, slot = "string", credential = "table", endpoint = "string",
}
local function spec(extra) return util.spec(common, extra) end

---@class hoist.azure.appservice.Ref which site: its group and name, a slot or production
---@field resource_group string
---@field name string the web app
---@field slot? string a deployment slot ("production" or nil: the site itself)
---@field subscription? string default: hoist.azure.subscription()
---@field credential? hoist.azure.Credential default: the chain
---@field endpoint? string

-- {credential, path of the site or slot} of a call
local function locate(fname, o)
  local az = azure()
  local c = az.credential_of(fname, o.credential)
  local sub = az.subscription(o.subscription, c)
  local p = az.resource_id(sub, o.resource_group, "Microsoft.Web/sites", o.name)
  if o.slot and o.slot ~= "" and o.slot:lower() ~= "production" then p = p .. "/slots/" .. enc(o.slot) end
  return c, p, sub
end

local function call(c, o, r) return azure().call(c, o, r) end

local function label(o)
  if o.slot and o.slot ~= "" and o.slot:lower() ~= "production" then return o.name .. "-" .. o.slot end
  return o.name
end

--- The ARM path of the site (or slot).
---@param opts hoist.azure.appservice.Ref
---@return string
function M.path(opts)
  local o = util.check_opts("hoist.azure.appservice.path", opts, spec())
  local _, p = locate("hoist.azure.appservice.path", o)
  return p
end

--- `https://<name>[-<slot>].azurewebsites.net`: where the site answers (the default host name).
---@param opts hoist.azure.appservice.Ref|{name: string, slot?: string}
---@return string
function M.url(opts) return ("https://%s.azurewebsites.net"):format(label(opts):lower()) end

--- True for an app setting name whose value hoist treats as a secret.
--- Internal: which app settings hoist.azure.appservice registers as secrets.
---@param name string
---@return boolean
function M.secret_name(name)
  local up = tostring(name):upper()
  for _, word in ipairs(SECRET_NAME) do
    if up:find(word, 1, true) then return true end
  end
  return false
end

local function register_settings(settings, extra)
  for k, v in pairs(settings or {}) do
    if type(v) == "string" and #v >= 4 and (M.secret_name(k) or (extra and extra[k])) then hoist.secret(v) end
  end
  return settings
end

---------------------------------------------------------------- plan and site

--- Creates or updates a Linux App Service plan.
---@param opts {resource_group: string, name: string, location: string, sku?: string, subscription?: string, credential?: hoist.azure.Credential, endpoint?: string}
---@return table plan the serverfarm (or {planned = true})
function M.plan(opts)
  local fname = "hoist.azure.appservice.plan"
  local o = util.check_opts(fname, opts, spec { location = { type = "string", required = true }, sku = "string" })
  local c, sub = azure().credential_of(fname, o.credential), nil
  sub = azure().subscription(o.subscription, c)
  local p = azure().resource_id(sub, o.resource_group, "Microsoft.Web/serverfarms", o.name)
  local r = call(c, o, { method = "PUT", path = p, action = "azure.appservice.plan",
    what = "create App Service plan " .. o.name,
    body = { location = o.location, kind = "linux", sku = { name = o.sku or M.defaults.sku },
             properties = { reserved = true } } })
  return r.planned and { planned = true, id = p } or r.body
end

--- The site (or slot), or nil when it does not exist.
---@param opts hoist.azure.appservice.Ref
---@return table|nil
function M.get(opts)
  local fname = "hoist.azure.appservice.get"
  local o = util.check_opts(fname, opts, spec())
  local c, p = locate(fname, o)
  local r = call(c, o, { path = p, what = "get web app " .. label(o), missing_ok = true })
  return r and r.body
end

---@class hoist.azure.appservice.Registry where App Service pulls from
---@field server string "myacr.azurecr.io" or "127.0.0.1:5002"
---@field username? string
---@field password? string a secret (registered here)

--- The app settings that carry registry credentials (App Service's own names:
--- DOCKER_REGISTRY_SERVER_URL, _USERNAME, _PASSWORD; the password registered as a secret).
---@param reg? hoist.azure.appservice.Registry
---@return table<string, string>
local function registry_settings(reg)
  if not reg then return {} end
  local server = reg.server:gsub("^https?://", "")
  local s = { DOCKER_REGISTRY_SERVER_URL = "https://" .. server }
  if reg.username then s.DOCKER_REGISTRY_SERVER_USERNAME = reg.username end
  if reg.password then s[M.REGISTRY_PASSWORD] = hoist.secret(reg.password) end
  return s
end
M.registry_settings = registry_settings

local function settings_list(s)
  local out = {}
  for i, k in ipairs(util.sorted_keys(s)) do out[i] = { name = k, value = tostring(s[k]) } end
  return out
end

---@class hoist.azure.appservice.PullIdentity a user-assigned identity the site pulls with
---@field id string its resource id
---@field client_id? string its client id (acrUserManagedIdentityID); nil under --dry-run for one still to be made

-- The site's identity block with the user-assigned identity `id` in it, keeping those it has.
local function with_identity(current, id)
  current = type(current) == "table" and current or {}
  local users = {}
  if type(current.userAssignedIdentities) == "table" then
    for k in pairs(current.userAssignedIdentities) do users[k] = {} end
  end
  users[id] = {}
  local system = tostring(current.type or ""):lower():find("systemassigned", 1, true)
  return { type = system and "SystemAssigned,UserAssigned" or "UserAssigned", userAssignedIdentities = users }
end

--- Creates a web app for containers (or a slot of one) running `image`, or replaces its whole
--- definition. `settings` are app settings; `registry` adds DOCKER_REGISTRY_SERVER_*;
--- `managed_identity = true` pulls with the site's identity (acrUseManagedIdentityCreds);
--- `pull_identity` with that user-assigned identity, assigned to the site
--- (acrUserManagedIdentityID: its client id).
---@param opts hoist.azure.appservice.Ref|{location: string, plan: string, image: string, settings?: table<string, string>, secret_settings?: table<string, string>, registry?: hoist.azure.appservice.Registry, managed_identity?: boolean, pull_identity?: hoist.azure.appservice.PullIdentity, command?: string, tags?: table<string, string>}
---@return table site (or {planned = true})
function M.create(opts)
  local fname = "hoist.azure.appservice.create"
  local o = util.check_opts(fname, opts, spec {
    location = { type = "string", required = true }, plan = { type = "string", required = true },
    image = { type = "string", required = true }, settings = "table", secret_settings = "table", registry = "table",
    managed_identity = "boolean", pull_identity = "table", command = "string", tags = "table",
  })
  local c, p, sub = locate(fname, o)
  local plan = o.plan
  if not plan:find("/", 1, true) then
    plan = azure().resource_id(sub, o.resource_group, "Microsoft.Web/serverfarms", plan)
  end
  local s = {}
  for k, v in pairs(o.settings or {}) do s[k] = v end
  for k, v in pairs(o.secret_settings or {}) do s[k] = hoist.secret(v) end
  for k, v in pairs(registry_settings(o.registry)) do s[k] = v end
  register_settings(s)
  local pi = o.pull_identity
  local r = call(c, o, { method = "PUT", path = p, action = "azure.appservice.create",
    what = "create web app " .. label(o),
    body = { location = o.location, kind = "app,linux,container", tags = o.tags, identity = pi and with_identity(nil, pi.id),
             properties = { serverFarmId = plan, reserved = true, siteConfig = {
               linuxFxVersion = "DOCKER|" .. o.image, acrUseManagedIdentityCreds = o.managed_identity == true or pi ~= nil,
               acrUserManagedIdentityID = pi and pi.client_id or nil,
               appCommandLine = o.command or "", appSettings = settings_list(s) } } } })
  return r.planned and { planned = true, id = p } or r.body
end

--- Deletes the site (or slot); absent is fine.
---@param opts hoist.azure.appservice.Ref
---@return {deleted: boolean, planned?: boolean}
function M.delete(opts)
  local fname = "hoist.azure.appservice.delete"
  local o = util.check_opts(fname, opts, spec())
  local c, p = locate(fname, o)
  local r = call(c, o, { method = "DELETE", path = p, action = "azure.appservice.delete",
                         what = "delete web app " .. label(o), missing_ok = true })
  if not r then return { deleted = false } end
  return { deleted = not r.planned and r.status ~= 204, planned = r.planned or nil }
end

---------------------------------------------------------------- settings and container

--- The app settings (config/appsettings/list). Values of secret-looking names (password,
--- secret, token, key, connection) and of DOCKER_REGISTRY_SERVER_PASSWORD are registered as
--- secrets before they are returned.
---@param opts hoist.azure.appservice.Ref
---@return table<string, string>
function M.settings(opts)
  local fname = "hoist.azure.appservice.settings"
  local o = util.check_opts(fname, opts, spec())
  local c, p = locate(fname, o)
  local r = call(c, o, { method = "POST", path = p .. "/config/appsettings/list", safe = true,
                         what = "list app settings of " .. label(o) })
  return register_settings(((r.body or {}).properties) or {})
end

--- Merges app settings: `set` and `secret` (values registered as secrets) are added or
--- replaced, names in `remove` go, every other setting stays. Returns the settings as sent
--- (nothing is sent when nothing changes). Never prints a value.
---@param opts hoist.azure.appservice.Ref|{set?: table<string, string>, secret?: table<string, string>, remove?: string[]}
---@return table<string, string> settings, boolean changed
function M.update_settings(opts)
  local fname = "hoist.azure.appservice.update_settings"
  local o = util.check_opts(fname, opts, spec { set = "table", secret = "table", remove = "table" })
  for _, v in pairs(o.secret or {}) do hoist.secret(v) end
  local current = M.settings { resource_group = o.resource_group, name = o.name, slot = o.slot,
                               subscription = o.subscription, credential = o.credential, endpoint = o.endpoint }
  local merged, changed = {}, false
  for k, v in pairs(current) do merged[k] = v end
  for _, part in ipairs { o.set or {}, o.secret or {} } do
    for k, v in pairs(part) do
      v = tostring(v)
      if merged[k] ~= v then merged[k], changed = v, true end
    end
  end
  for _, k in ipairs(o.remove or {}) do
    if merged[k] ~= nil then merged[k], changed = nil, true end
  end
  if not changed then return merged, false end
  local c, p = locate(fname, o)
  call(c, o, { method = "PUT", path = p .. "/config/appsettings", body = { properties = merged },
               action = "azure.appservice.settings",
               what = ("set app settings of %s (%s)"):format(label(o), table.concat(util.sorted_keys(merged), ", ")) })
  return merged, true
end

---@class hoist.azure.appservice.Container what a site runs
---@field image string the reference after DOCKER| ("" when the site runs no container)
---@field managed_identity boolean acrUseManagedIdentityCreds
---@field pull_identity? string acrUserManagedIdentityID: the client id of the user-assigned identity it pulls with
---@field command string appCommandLine
---@field port? integer WEBSITES_PORT (nil: none; App Service finds a container on 80 or 8080)

--- The container a site is configured to run (config/web and WEBSITES_PORT).
---@param opts hoist.azure.appservice.Ref
---@return hoist.azure.appservice.Container
function M.container(opts)
  local fname = "hoist.azure.appservice.container"
  local o = util.check_opts(fname, opts, spec())
  local c, p = locate(fname, o)
  local web = (call(c, o, { path = p .. "/config/web", what = "get site config of " .. label(o) }).body or {}).properties or {}
  local settings = M.settings(o)
  local fx = web.linuxFxVersion or ""
  local uid = web.acrUserManagedIdentityID
  return { image = fx:match("^[Dd][Oo][Cc][Kk][Ee][Rr]|(.*)$") or "", managed_identity = web.acrUseManagedIdentityCreds == true,
           pull_identity = type(uid) == "string" and uid ~= "" and uid or nil, command = web.appCommandLine or "", port = tonumber(settings.WEBSITES_PORT or "") }
end

--- Assigns the user-assigned identity `identity` (a resource id) to the site (or slot), keeping
--- the identities it has; nothing changes when it has it. What a pull with that identity needs:
--- App Service pulls only with an identity assigned to the site.
---@param opts hoist.azure.appservice.Ref|{identity: string}
---@return {changed: boolean, planned?: boolean}
function M.assign_identity(opts)
  local fname = "hoist.azure.appservice.assign_identity"
  local o = util.check_opts(fname, opts, spec { identity = { type = "string", required = true } })
  local c, p = locate(fname, o)
  local site = (call(c, o, { path = p, what = "get web app " .. label(o) }) or {}).body or {}
  local have = type(site.identity) == "table" and type(site.identity.userAssignedIdentities) == "table"
    and site.identity.userAssignedIdentities or {}
  for k in pairs(have) do
    if k:lower() == o.identity:lower() then return { changed = false } end
  end
  local r = call(c, o, { method = "PATCH", path = p, action = "azure.appservice.identity", body = {
    identity = with_identity(site.identity, o.identity) }, what = ("assign identity %s to %s"):format(
    o.identity:match("([^/]+)$"), label(o)) })
  return { changed = true, planned = r.planned or nil }
end

--- Sets the container (config/web): `linuxFxVersion = DOCKER|image`, and when given the
--- managed-identity pull and the start command. With `pull_identity`, the site pulls with that
--- user-assigned identity (assigned to it first: assign_identity).
--- App Service starts a new container.
---@param opts hoist.azure.appservice.Ref|{image: string, managed_identity?: boolean, pull_identity?: hoist.azure.appservice.PullIdentity, command?: string}
---@return table planned_or_config
function M.set_container(opts)
  local fname = "hoist.azure.appservice.set_container"
  local o = util.check_opts(fname, opts, spec { image = { type = "string", required = true },
                                                managed_identity = "boolean", pull_identity = "table", command = "string" })
  local c, p = locate(fname, o)
  local pi = o.pull_identity
  if pi then
    M.assign_identity { resource_group = o.resource_group, name = o.name, slot = o.slot, subscription = o.subscription,
                        credential = c, endpoint = o.endpoint, identity = pi.id }
  end
  local r = call(c, o, { method = "PATCH", path = p .. "/config/web", action = "azure.appservice.container",
    what = ("set the container of %s to %s"):format(label(o), o.image),
    body = { properties = { linuxFxVersion = "DOCKER|" .. o.image,
                            acrUseManagedIdentityCreds = pi and true or o.managed_identity,
                            acrUserManagedIdentityID = pi and pi.client_id or nil, appCommandLine = o.command } } })
  return r.planned and { planned = true } or (r.body or {}).properties
end

---------------------------------------------------------------- actions

--- Restarts the site (or slot): App Service pulls the configured image again.
---@param opts hoist.azure.appservice.Ref|{synchronous?: boolean}
---@return {planned?: boolean}
function M.restart(opts)
  local fname = "hoist.azure.appservice.restart"
  local o = util.check_opts(fname, opts, spec { synchronous = "boolean" })
  local c, p = locate(fname, o)
  local r = call(c, o, { method = "POST", path = p .. "/restart", action = "azure.appservice.restart",
                         query = o.synchronous and { synchronous = "true" } or nil, what = "restart " .. label(o) })
  return { planned = r.planned or nil }
end

---@class hoist.azure.appservice.Credentials the publishing (SCM) credentials, all secret but the user
---@field username string "$app" (slots: "$app__slot")
---@field password string
---@field scm string "https://app.scm.azurewebsites.net"
---@field webhook_url string "https://$app:<password>@app.scm.azurewebsites.net/docker/hook" (a secret)

--- The publishing credentials, and the CD webhook URL built from them. The password and the
--- webhook URL are registered as secrets before anything can print them.
---@param opts hoist.azure.appservice.Ref
---@return hoist.azure.appservice.Credentials
function M.credentials(opts)
  local fname = "hoist.azure.appservice.credentials"
  local o = util.check_opts(fname, opts, spec())
  local c, p = locate(fname, o)
  local r = call(c, o, { method = "POST", path = p .. "/config/publishingcredentials/list", safe = true,
                         what = "list publishing credentials of " .. label(o) })
  local props = (r.body or {}).properties or {}
  local password = props.publishingPassword
  if type(password) ~= "string" or password == "" then
    fail("not_found", ("web app %s has no publishing password (basic authentication to its SCM site may be off)")
      :format(label(o)))
  end
  hoist.secret(password)
  if props.scmUri then hoist.secret(props.scmUri) end
  local scm = ("https://%s.scm.azurewebsites.net"):format(label(o):lower())
  local user = props.publishingUserName or ("$" .. o.name)
  local hook = hoist.secret(("https://%s:%s@%s/docker/hook"):format(user, password, scm:gsub("^https://", "")))
  return { username = user, password = password, scm = scm, webhook_url = hook }
end

--- POSTs the site's CD webhook (`/docker/hook` on its SCM site, with the publishing
--- credentials): App Service pulls its image tag again and starts a new container beside the
--- running one. The webhook URL is a secret and never shown.
---@param opts hoist.azure.appservice.Ref|{timeout?: number}
---@return {status: integer, planned?: boolean}
function M.webhook(opts)
  local fname = "hoist.azure.appservice.webhook"
  local o = util.check_opts(fname, opts, spec { timeout = "number" })
  local creds = M.credentials(o)
  local url = creds.scm .. "/docker/hook"
  if dry_run() then
    util.plan { action = "azure.appservice.webhook", method = "POST", url = url,
                message = ("POST the CD webhook of %s (%s)"):format(label(o), url) }
    return { status = 0, planned = true }
  end
  -- the URL carries the credentials (curl sends them as Basic): the form users paste into a
  -- registry's webhook settings; its parts and their Basic encoding are secrets already
  hoist.secret(creds.username .. ":" .. creds.password)
  local r = hoist.http.request { method = "POST", url = creds.webhook_url, body = "", timeout = o.timeout or 60 }
  if r.status >= 300 then
    fail(r.status == 401 and "unauthorized" or "unavailable",
      ("the CD webhook of %s answered HTTP %d: %s"):format(label(o), r.status, (r.body or ""):sub(1, 200)),
      { status = r.status })
  end
  hoist.log.info(("POSTed the CD webhook of %s (HTTP %d)"):format(label(o), r.status))
  return { status = r.status }
end

--- Swaps a slot with another (default production): the running containers and their
--- settings change places; sticky settings stay. Swapping again swaps back.
---@param opts hoist.azure.appservice.Ref|{slot: string, target?: string}
---@return {planned?: boolean}
function M.swap(opts)
  local fname = "hoist.azure.appservice.swap"
  local o = util.check_opts(fname, opts, spec { target = "string" })
  if not o.slot or o.slot == "" or o.slot:lower() == "production" then
    fail("invalid_argument", fname .. ": option 'slot' must name a deployment slot (not production)", { option = "slot" })
  end
  local c, p = locate(fname, o)
  local target = o.target or "production"
  local r = call(c, o, { method = "POST", path = p .. "/slotsswap", body = { targetSlot = target, preserveVnet = true },
                         action = "azure.appservice.swap", poll_interval = 1,
                         what = ("swap slot %s of %s with %s"):format(o.slot, o.name, target) })
  hoist.log.event("appservice.swapped", ("%sswapped slot %s of %s with %s"):format(r.planned and "dry run: " or "",
    o.slot, o.name, target), { name = o.name, slot = o.slot, target = target })
  return { planned = r.planned or nil }
end

--- Cancels a swap with preview of the slot (`resetSlotConfig`): the slot's configuration goes
--- back to its own; nothing changes when no swap was prepared. App Service refuses it, as every
--- change of the site, with 409 while a swap runs on the site (hoist.azure.another_operation):
--- appservice.swap_back does it first, through hoist.azure.when_settled, to wait for a swap a
--- GET does not show.
---@param opts hoist.azure.appservice.Ref|{slot: string}
---@return {planned?: boolean}
function M.reset_swap(opts)
  local fname = "hoist.azure.appservice.reset_swap"
  local o = util.check_opts(fname, opts, spec())
  if not o.slot or o.slot == "" or o.slot:lower() == "production" then
    fail("invalid_argument", fname .. ": option 'slot' must name a deployment slot (not production)", { option = "slot" })
  end
  local c, p = locate(fname, o)
  local r = call(c, o, { method = "POST", path = p .. "/resetSlotConfig", action = "azure.appservice.reset_swap",
                         what = ("reset the swap configuration of slot %s of %s"):format(o.slot, o.name) })
  return { planned = r.planned or nil }
end

--- The container logs App Service keeps for the site: the platform's docker log (pulls,
--- starts, warmup pings) then the container's own output (`POST .../containerlogs`).
---@param opts hoist.azure.appservice.Ref
---@return string
function M.logs(opts)
  local fname = "hoist.azure.appservice.logs"
  local o = util.check_opts(fname, opts, spec())
  local c, p = locate(fname, o)
  local r = call(c, o, { method = "POST", path = p .. "/containerlogs", safe = true, what = "container logs of " .. label(o) })
  local body = r.body
  if type(body) == "table" then body = hoist.json.encode(body) end
  return body or ""
end

---------------------------------------------------------------- what started

---@class hoist.azure.appservice.Launch one container start, as the platform's docker log tells it
---@field image string what was pulled
---@field digest? string the digest the pull reported
---@field container? string the container's name
---@field outcome "starting"|"started"|"no_response"|"exited"|"pull_failed"|"start_failed"
---@field port? integer the port App Service pinged (no_response)
---@field line string the log line that settled it

-- The platform's lines ("<time> INFO  - text"); the container's own output is not theirs.
local function platform_lines(text)
  local out = {}
  for line in (text or ""):gmatch("[^\n]+") do
    local msg = line:match("^%d%d%d%d%-%d%d%-%d%dT[%d:%.]+Z (%u+ *%- .*)$")
    if msg then out[#out + 1] = line end
  end
  return out
end

--- The container starts in a site's log text (see M.logs), oldest first. `after` (a line of
--- an earlier read) keeps only what came after it.
---@param text string
---@param after? string
---@return hoist.azure.appservice.Launch[]
function M.launches(text, after)
  local lines = platform_lines(text)
  local first = 1
  if after then
    for i = #lines, 1, -1 do
      if lines[i] == after then first = i + 1 break end
    end
  end
  local out, by_name, current = {}, {}, nil
  for i = first, #lines do
    local line = lines[i]
    local msg = line:match("%- (.*)$") or ""
    local image = msg:match("^Pulling image: (%S+)")
    if image then
      -- a container started from repository@digest runs that digest, whatever the pull printed
      current = { image = image, outcome = "starting", line = line, digest = image:match("@(sha256:%x+)$") }
      out[#out + 1] = current
    elseif current and msg:match("^Digest: ") then
      current.digest = current.image:match("@(sha256:%x+)$") or msg:match("^Digest: (%S+)")
    elseif current and msg:match("^Pulling docker image .* failed") then
      current.outcome, current.line = "pull_failed", line
    elseif current and msg:match("^docker run ") then
      current.container = msg:match("%-%-name (%S+)")
      if current.container then by_name[current.container] = current end
    else
      local name = msg:match("^Container (%S+) for site %S+ initialized successfully")
      local launch = name and by_name[name]
      if launch then launch.outcome, launch.line = "started", line end
      name = msg:match("^Container (%S+) didn't respond to HTTP pings on port: %d+")
      launch = name and by_name[name]
      if launch then
        launch.outcome, launch.line, launch.port = "no_response", line, tonumber(msg:match("port: (%d+)"))
      end
      name = msg:match("^Container (%S+) for site %S+ has exited")
      launch = name and by_name[name]
      if launch and launch.outcome == "starting" then launch.outcome, launch.line = "exited", line end
      name = msg:match("^Container (%S+) for site %S+ could not start")
      launch = name and by_name[name]
      if launch then launch.outcome, launch.line = "start_failed", line end
    end
  end
  return out
end

--- The last line of the platform's log now: pass it as `after` to see only what follows.
---@param opts hoist.azure.appservice.Ref
---@return string|nil
function M.log_cursor(opts)
  local lines = platform_lines(M.logs(opts))
  return lines[#lines]
end

--- The image started last and serving, per the log: {image, digest, container} or nil.
---@param opts hoist.azure.appservice.Ref
---@return hoist.azure.appservice.Launch|nil
function M.running(opts)
  local all = M.launches(M.logs(opts))
  for i = #all, 1, -1 do
    if all[i].outcome == "started" then return all[i] end
  end
end

--- The ports an image EXPOSEs (hoist.azure.ports.exposed): nil when the image is not here.
M.exposed_ports = require("hoist.azure.ports").exposed

-- Why a container did not answer App Service's ping, naming WEBSITES_PORT and the port the
-- container listens on (its log, its EXPOSE: hoist.azure.ports, shared with aci and
-- containerapp). `websites_port` is the site's WEBSITES_PORT, nil when it has none: App Service
-- then finds a container on 80 or 8080 by itself (its Linux FAQ), so an app on 8080 that did
-- not answer was slow, not on the wrong port, and only another port needs WEBSITES_PORT.
local DETECTED = { [80] = true, [8080] = true }
local function port_message(where, launch, image, logs, websites_port)
  local ports = require "hoist.azure.ports"
  local waits = launch.port or websites_port or 80
  local base = ("the container of %s (%s) did not answer App Service's HTTP ping on port %d"):format(where,
    launch.image, waits)
  local setting = websites_port and ("WEBSITES_PORT=%d"):format(websites_port)
    or "no WEBSITES_PORT: App Service tried 80 and 8080"
  local exposed = ports.exposed(image)
  local wrong, seen = ports.mismatch { port = waits, setting = "WEBSITES_PORT", waits = "App Service waits on",
                                       exposed = exposed, logs = logs, expose_only = true }
  if wrong and not (websites_port == nil and DETECTED[seen.listens]) then return base .. ": " .. wrong end
  if exposed and #exposed > 0 then
    local listed = {}
    for i, p in ipairs(exposed) do listed[i] = tostring(p) end
    return ("%s (%s, EXPOSE %s): the app did not start listening within the start time limit "
      .. "(WEBSITES_CONTAINER_START_TIME_LIMIT); see its container logs"):format(base, setting, table.concat(listed, " "))
  end
  return ("%s (%s; the image EXPOSEs nothing hoist can see): set WEBSITES_PORT to the port the app "
    .. "listens on"):format(base, setting)
end

-- Evidence: the container's own last lines (not the platform's).
local function container_tail(text, n)
  local lines = {}
  for line in (text or ""):gmatch("[^\n]+") do
    if not line:match("^%d%d%d%d%-%d%d%-%d%dT[%d:%.]+Z %u+ *%- ") then lines[#lines + 1] = line end
  end
  return table.concat(lines, "\n", math.max(1, #lines - (n or 20) + 1))
end

--- Waits until App Service has started a container of `image` (since `after`, a log cursor)
--- and returns that start. Raises rollout_failed when the start failed: a container that did
--- not answer on the port App Service waits on names WEBSITES_PORT and the image's EXPOSE
--- ("the container listens on 8000 (EXPOSE 8000) but App Service waits on 80: set
--- WEBSITES_PORT=8000"); timeout when nothing is settled in `timeout` seconds.
---@param opts hoist.azure.appservice.Ref|{image: string, after?: string, timeout?: number, poll_interval?: number}
---@return hoist.azure.appservice.Launch
function M.wait_started(opts)
  local fname = "hoist.azure.appservice.wait_started"
  local o = util.check_opts(fname, opts, spec { image = { type = "string", required = true }, after = "string",
                                                timeout = "number", poll_interval = "number" })
  local ref = { resource_group = o.resource_group, name = o.name, slot = o.slot, subscription = o.subscription,
                credential = o.credential, endpoint = o.endpoint }
  if dry_run() then return { image = o.image, outcome = "started", line = "", planned = true } end
  local deadline = hoist.now() + (o.timeout or (M.defaults.start_time_limit + M.defaults.pull_margin))
  while true do
    local text = M.logs(ref)
    local mine
    for _, l in ipairs(M.launches(text, o.after)) do
      if l.image == o.image then mine = l end
    end
    if mine and mine.outcome == "started" then return mine end
    if mine and mine.outcome ~= "starting" then
      local where = label(o)
      local message
      if mine.outcome == "no_response" then
        local okc, configured = util.try(M.container, ref)
        message = port_message(where, mine, o.image, container_tail(text, 50), okc and configured and configured.port or nil)
      elseif mine.outcome == "pull_failed" then
        message = ("App Service could not pull %s for %s: check the registry settings (DOCKER_REGISTRY_SERVER_*) "
          .. "or the managed identity's AcrPull role"):format(o.image, where)
      else
        message = ("the container of %s (%s) exited during startup: %s"):format(where, o.image, mine.line)
      end
      fail("rollout_failed", message, { launch = mine, logs = container_tail(text, 20), image = o.image })
    end
    if hoist.now() > deadline then
      fail("timeout", ("App Service did not report a start of %s on %s within %gs"):format(o.image, label(o),
        o.timeout or (M.defaults.start_time_limit + M.defaults.pull_margin)), { image = o.image, logs = container_tail(text, 20) })
    end
    hoist.sleep(o.poll_interval or M.defaults.poll_interval)
  end
end

return M
