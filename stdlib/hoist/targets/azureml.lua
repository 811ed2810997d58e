--- hoist.targets.azureml: deploys a container to an Azure Machine Learning managed online
--- endpoint, blue/green.
---
--- The image becomes an environment version of the workspace (a custom container: the image
--- and its inference routes, liveness and readiness on `health_path`, scoring on
--- `scoring_path`, all on `container_port`). Each run creates a new deployment of the endpoint
--- (named from the run id) with `instance_count` instances of `instance_type`, waits until it
--- is provisioned (Azure ML waits for the readiness route; a failure brings the deployment's
--- logs, from getLogs), invokes it directly (header azureml-model-deployment) with the sample
--- requests and checks their answers, gives it `canary` percent of the endpoint's traffic and
--- checks the samples through the scoring URI at that share, then gives it 100 %. The endpoint
--- key is a registered secret. The previous deployment stays (a rollback is one traffic
--- change); older ones without traffic are deleted.
---
--- Compensation "azureml.traffic_back" (journaled before the deployment is created; `hoist
--- rollback <id>` runs it from a later process): all traffic back to the previous deployment,
--- the new one deleted; after a first deploy, the endpoint deleted.
---
--- Where it works (credential, subscription, the resource group, Microsoft.MachineLearningServices
--- registered) and the ARM-side deploy lock come from hoist.targets.azure. The workspace must
--- exist (it carries storage, a key vault and a registry a deploy does not make).
local M = {}

M.name = "azureml"

local azt = require "hoist.targets.azure"
local util = require "hoist.util"
local fail, dry_run = util.fail, util.dry_run

--- The options only this target takes, with those of every Azure target (hoist.targets.azure);
--- `name` is the online endpoint's.
M.options = azt.merge_options({
  name = { type = "string", description = "Online endpoint name (default: the service name; 3-32 letters, digits and '-')" },
  workspace = { type = "string", required = true, pattern = "[%w][%w_%-]*", max_length = 33,
                hint = "a workspace name", description = "Azure Machine Learning workspace (must exist)" },
  instance_type = { type = "string", default = "Standard_DS3_v2", description = "VM size of the deployment's instances" },
  instance_count = { type = "number", default = 1, integer = true, min = 1, max = 20, description = "Instances of the deployment" },
  scoring_path = { type = "string", default = "/score", pattern = "/[^%s]*", hint = "a path starting with '/'",
                   description = "The container's scoring route (the scoring URI's /score reaches it)" },
  samples = { type = "string|table", description = "Sample requests and expected answers: a JSON list (or a file "
                .. "holding one) of {body, expect, method?}; expect: a JSON value the answer contains, or a Lua pattern" },
  canary = { type = "number", default = 20, integer = true, min = 0, max = 99,
             description = "Percent of the traffic the new version (revision, deployment) gets while it is checked (0: none)" },
  deployment_timeout = { type = "number", default = 600, min = 1,
                         description = "Seconds a new deployment gets to answer its readiness route" },
  registry_server = { type = "string", description = "Registry the image is pulled from (default: the image's)" },
  registry_username = { type = "string", description = "Registry user (a workspace connection; default: the workspace's registry through the endpoint's identity)" },
  registry_password = { type = "string", secret = true, description = "Registry password (kept in the workspace connection)" },
}, { "registry_identity" })

--- The named rollback actions deploy registers.
M.compensations = { "azureml.traffic_back" }

local NS = "Microsoft.MachineLearningServices"

---------------------------------------------------------------- ARM calls

-- The workspace's id (and of a child: "onlineEndpoints", name, ...).
local function ws_path(a, ...)
  return require("hoist.azure").resource_id(a.subscription, a.resource_group, NS .. "/workspaces", a.workspace, ...)
end
local function ep_path(a, ...) return ws_path(a, "onlineEndpoints", a.name, ...) end

local function call(a, r)
  r.credential, r.endpoint = a.credential, a.endpoint -- the api-version: the one pinned for the type (docs/azure.md)
  r.poll_interval = r.poll_interval or 1
  return require("hoist.azure").request(r)
end

local function get(a, path, what)
  local r = call(a, { path = path, what = what, missing_ok = true })
  return r and r.body
end

local function endpoint_of(a) return get(a, ep_path(a), "get online endpoint " .. a.name) end

local function deployments(a)
  return require("hoist.azure").list { path = ep_path(a, "deployments"), credential = a.credential, endpoint = a.endpoint,
    what = "list deployments of " .. a.name }
end

-- Sets the endpoint's traffic (a PUT of the endpoint: Azure's PATCH takes tags and identity only).
local function set_traffic(a, weights)
  local ep = endpoint_of(a) or (dry_run() and { properties = { authMode = "Key" } })
  if not ep then fail("not_found", ("online endpoint %s is gone"):format(a.name)) end
  local shown = {}
  for _, k in ipairs(util.sorted_keys(weights)) do shown[#shown + 1] = ("%s %d%%"):format(k, weights[k]) end
  call(a, { method = "PUT", path = ep_path(a), action = "azure.ml.traffic", what = "set the traffic of " .. a.name,
            body = { location = ep.location, tags = ep.tags, identity = ep.identity and { type = ep.identity.type } or nil,
                     properties = { authMode = ep.properties.authMode, description = ep.properties.description,
                                    traffic = weights } } })
  hoist.log.event("azureml.traffic", ("%straffic of %s: %s"):format(dry_run() and "dry run: " or "", a.name,
    table.concat(shown, ", ")), { name = a.name, weights = weights })
end

local function delete_deployment(a, name)
  call(a, { method = "DELETE", path = ep_path(a, "deployments", name), action = "azure.ml.delete_deployment",
            what = "delete deployment " .. name, missing_ok = true })
end

---------------------------------------------------------------- compensation

local function traffic_back_over(a, ep)
  if not ep then return end
  if not a.previous then
    call(a, { method = "DELETE", path = ep_path(a), action = "azure.ml.delete_endpoint", missing_ok = true,
              what = "delete online endpoint " .. a.name })
    hoist.log.event("azureml.restored", ("deleted online endpoint %s, which this run created"):format(a.name), { name = a.name })
    return
  end
  local traffic = ep.properties.traffic or {}
  for d, w in pairs(traffic) do
    if w > 0 and d ~= a.previous and d ~= a.deployment then
      hoist.log.event("azureml.superseded", ("not moving the traffic of %s: deployment %s, made since, has some")
        :format(a.name, d), { name = a.name, deployment = d })
      return
    end
  end
  if (traffic[a.previous] or 0) ~= 100 then
    local weights = { [a.previous] = 100 }
    for d in pairs(traffic) do if d ~= a.previous then weights[d] = 0 end end
    set_traffic(a, weights)
  end
  local function dep() return a.deployment and get(a, ep_path(a, "deployments", a.deployment), "get deployment " .. a.deployment) end
  -- the deployment's own operation may still run (a run cancelled while it was polled)
  require("hoist.azure").when_settled({ what = "deployment " .. tostring(a.deployment), get = dep }, function(d)
    if d then delete_deployment(a, a.deployment) end
  end)
  hoist.log.event("azureml.restored", ("%s: all traffic on %s again, %s deleted"):format(a.name, a.previous,
    tostring(a.deployment)), { name = a.name, previous = a.previous, deployment = a.deployment })
end

local function traffic_back(a)
  local r = {}
  for k, v in pairs(a) do r[k] = v end
  r.credential = azt.credential(a.credential) -- the journal keeps a source name only
  r.subscription = require("hoist.azure").subscription(a.subscription, r.credential)
  return require("hoist.azure").when_settled({ what = "online endpoint " .. a.name, timeout = a.timeout,
    get = function() return endpoint_of(r) end }, function(ep) return traffic_back_over(r, ep) end)
end

hoist.pipeline.action("azureml.traffic_back", function(a) azt.holding(M.name, a, traffic_back, a) end,
  { args = azt.journal_args { workspace = { type = "string", required = true }, deployment = "string",
                              previous = { type = "string|boolean", required = true } } })

---------------------------------------------------------------- samples

---@class hoist.targets.azureml.Sample
---@field body? any the request body (a table is sent as JSON)
---@field expect? any what the answer must hold: a JSON value it contains (tables: every key, recursively), or a Lua pattern of its body
---@field method? string default "POST"

-- The sample requests of `o.samples` (a list, a JSON text or a file holding one); one POST of
-- {} expecting 200 when none are given.
local function samples_of(o)
  local s = o.samples
  if s == nil then return { { body = {} } } end
  if type(s) == "string" then
    local text = s
    if not s:match("^%s*[%[{]") then
      text = hoist.fs.read_file(s, { missing_ok = true })
      if not text then fail("invalid_argument", ("targets.azureml: samples file %s cannot be read"):format(s), { exit_code = 2 }) end
    end
    local ok, v = pcall(hoist.json.decode, text)
    if not ok or type(v) ~= "table" then
      fail("invalid_argument", "targets.azureml: samples must be a JSON list of {body, expect, method}", { exit_code = 2 })
    end
    s = v
  end
  if s.body ~= nil or s.expect ~= nil then s = { s } end
  for i, x in ipairs(s) do
    if type(x) ~= "table" then
      fail("invalid_argument", ("targets.azureml: sample %d must be {body, expect, method}"):format(i), { exit_code = 2 })
    end
  end
  return s
end

-- Whether `got` holds `want`: equal scalars; for a table, every key of `want` held by `got`.
local function contains(got, want)
  if type(want) ~= "table" then return got == want end
  if type(got) ~= "table" then return false end
  for k, v in pairs(want) do if not contains(got[k], v) then return false end end
  return true
end

-- Why the answer `resp` (status, body) does not hold sample `x`'s expectation, or nil.
local function answer_problem(x, resp)
  if resp.status ~= 200 then return ("status %s, expected 200"):format(tostring(resp.status)) end
  if type(x.expect) == "string" then
    if not (resp.body or ""):find(x.expect) then return ("the answer does not match the pattern %q"):format(x.expect) end
  elseif x.expect ~= nil then
    local ok, doc = pcall(hoist.json.decode, resp.body or "")
    if not ok then return "the answer is not JSON: " .. (resp.body or ""):sub(1, 200) end
    if not contains(doc, x.expect) then
      return ("the answer %s does not hold %s"):format(hoist.json.encode(doc):sub(1, 200), hoist.json.encode(x.expect))
    end
  end
end

-- The request of sample `x` to the scoring URI (with the key; `deployment`: routed to it
-- directly by the azureml-model-deployment header).
local function request_of(o, uri, key, x, deployment)
  local headers = { Authorization = "Bearer " .. key }
  if deployment then headers["azureml-model-deployment"] = deployment end
  local body = x.body
  if type(body) == "table" then body = hoist.json.encode(body) end
  if body ~= nil then headers["Content-Type"] = "application/json" end
  return { url = uri, method = x.method or "POST", headers = headers, body = body ~= nil and tostring(body) or nil,
           timeout = (o.verify or {}).timeout or 10 }
end

-- Sample `x` sent to `deployment` directly until its answer holds (retries as the switch's check).
local function check_sample(o, uri, key, x, i, deployment, retries)
  local v = o.verify or {}
  local check = request_of(o, uri, key, x, deployment)
  check.retries, check.interval = retries or 0, v.interval or 1
  check.name = ("sample %d on %s"):format(i, deployment and ("deployment " .. deployment .. " (azureml-model-deployment)")
    or "the endpoint")
  if type(x.expect) == "string" then
    check.expect_body = x.expect
  elseif x.expect ~= nil then
    check.expect_json = function(_, resp)
      local why = answer_problem(x, resp)
      return why == nil, why
    end
  end
  return hoist.verify.http(check)
end

-- Requests through the scoring URI at the canary's share: every answer must be 200, and those
-- the new deployment gave (Azure names it in the answer's azureml-model-deployment header) must
-- hold the sample's expectation; the stable deployment answers the others as it always did.
local CANARY_SAMPLE = 20

local function check_canary(o, uri, key, name)
  for i = 1, CANARY_SAMPLE do
    local k = (i - 1) % #o.samples_list + 1
    local x = o.samples_list[k]
    local resp = hoist.http.request(request_of(o, uri, key, x))
    local by = resp.headers["azureml-model-deployment"]
    local why = resp.status ~= 200 and ("status " .. tostring(resp.status)) or (by == name and answer_problem(x, resp)) or nil
    if why then
      fail("rollout_failed", ("sample %d through the scoring URI at the canary's %d%%, request %d of %d (answered by %s): %s")
        :format(k, o.canary, i, CANARY_SAMPLE, tostring(by), why), { sample = k, deployment = by, status = resp.status,
          body_start = hoist.scrub((resp.body or ""):sub(1, 200)) })
    end
  end
end

local function key_of(a)
  local r = call(a, { method = "POST", path = ep_path(a, "listKeys"), safe = true, what = "the keys of " .. a.name })
  local key = r and r.body and r.body.primaryKey
  if type(key) ~= "string" or #key < 4 then fail("unavailable", ("listKeys of %s gave no key"):format(a.name)) end
  return hoist.secret(key)
end

---------------------------------------------------------------- deploy

local test_pause = azt.test_pause

local function options_of(opts, fname)
  local o = azt.deploy_options(fname or "hoist.targets.azureml.deploy", opts, M.options)
  o.samples_list = samples_of(o)
  return o
end

local function deployment_of(run)
  local n = ("d" .. tostring(run):lower():gsub("[^a-z0-9]", "")):sub(1, 32)
  return #n >= 3 and n or (n .. "run")
end

-- The environment version running `image` with the routes of `o` (an immutable asset: one per deployment).
local function environment(a, o, image, version)
  local env = a.name
  call(a, { method = "PUT", path = ws_path(a, "environments", env), body = { properties = {
              description = "images hoist deployed to online endpoint " .. a.name } },
            action = "azure.ml.environment", what = "environment " .. env })
  local route = function(path) return { path = path, port = o.container_port } end
  local r = call(a, { method = "PUT", path = ws_path(a, "environments", env, "versions", version),
    action = "azure.ml.environment", what = ("environment %s version %s"):format(env, version),
    body = { properties = { image = image, osType = "Linux", inferenceConfig = { livenessRoute = route(o.health_path),
      readinessRoute = route(o.health_path), scoringRoute = route(o.scoring_path) } } } })
  return r.planned and ws_path(a, "environments", env, "versions", version) or r.body.id
end

-- A registry connection of the workspace holding the pull credential (Azure ML pulls from a
-- registry other than the workspace's with a connection).
local function connection(a, o, image)
  if not o.registry_password then return end
  require("hoist.azure.pull").check("targets.azureml", o) -- kept for every later pull: must not expire
  hoist.secret(o.registry_password) -- a script's own call too, not only container@1's secret parameter
  local server = o.registry_server or hoist.image.parse(image).registry
  local cname = ("hoist-%s"):format(server:lower():gsub("[^a-z0-9]", "-")):sub(1, 64)
  call(a, { method = "PUT", path = ws_path(a, "connections", cname), action = "azure.ml.connection",
            what = "registry connection " .. cname, body = { properties = { category = "ContainerRegistry", target = server,
              authType = "UsernamePassword", credentials = { username = o.registry_username, password = o.registry_password } } } })
end

-- Creates the deployment and waits until it is provisioned; a failure raises rollout_failed
-- with Azure's reason and the deployment's logs.
local function create_deployment(a, o, name, env_id)
  local ok, err = util.try(call, a, { method = "PUT", path = ep_path(a, "deployments", name), wait_timeout = o.deployment_timeout + 300,
    action = "azure.ml.deployment", what = "deployment " .. name,
    body = { location = a.location, kind = "Managed", tags = o.labels, sku = { name = "Default", capacity = o.instance_count },
             properties = { endpointComputeType = "Managed", instanceType = o.instance_type, environmentId = env_id,
                            environmentVariables = o.env_all, appInsightsEnabled = false,
                            livenessProbe = { initialDelay = "PT0S", period = "PT10S", failureThreshold = 30, timeout = "PT2S" },
                            readinessProbe = { initialDelay = "PT0S", period = "PT1S", timeout = "PT2S",
                                               failureThreshold = math.max(1, math.ceil(o.deployment_timeout)) } } } })
  if ok then return end
  local logs = ""
  local got, r = util.try(call, a, { method = "POST", path = ep_path(a, "deployments", name, "getLogs"), safe = true,
    body = { containerType = "InferenceServer", tail = 30 }, what = "the logs of deployment " .. name })
  if got and r and r.body then logs = tostring(r.body.content or "") end
  fail("rollout_failed", ("deployment %s of %s failed: %s"):format(name, a.name, hoist.is_error(err) and err.message or tostring(err)),
    { deployment = name, logs = logs, error = hoist.is_error(err) and err.details or nil })
end

local function deploy(o)
  local jargs = azt.journal(o) -- before the credential is resolved: the journal keeps only its source name
  local where = azt.prepare("targets.azureml", o, NS)
  local a = { credential = where.credential, subscription = where.subscription, resource_group = o.resource_group,
              workspace = o.workspace, name = o.name, endpoint = o.endpoint }
  jargs.subscription, jargs.workspace = a.subscription, o.workspace
  local ws = get(a, ws_path(a), "get workspace " .. o.workspace)
  if not ws and not dry_run() then
    fail("invalid_argument", ("targets.azureml: workspace %s does not exist in resource group %s"):format(o.workspace,
      o.resource_group), { workspace = o.workspace, exit_code = 2 })
  end
  a.location = o.location or (ws and ws.location) or where.location
  local on_rollback = function(action, args) if o.ctx then o.ctx:on_rollback(action, args) end end
  local image, name = o.image, deployment_of(o.run)
  jargs.deployment = name
  o.env_all = {}
  for k, v in pairs(o.env or {}) do o.env_all[k] = tostring(v) end
  for k, v in pairs(o.secret_env or {}) do o.env_all[k] = hoist.secret(tostring(v)) end
  connection(a, o, image)
  local env_id = environment(a, o, image, name)
  local ep, previous = endpoint_of(a), nil
  if not ep then
    jargs.previous = false
    on_rollback("azureml.traffic_back", jargs)
    local r = call(a, { method = "PUT", path = ep_path(a), action = "azure.ml.endpoint", what = "online endpoint " .. a.name,
      body = { location = a.location, tags = o.labels, identity = { type = "SystemAssigned" },
               properties = { authMode = "Key", description = "deployed by hoist" } } })
    ep = r.body
  else
    local top = 0
    for d, w in pairs(ep.properties.traffic or {}) do if w > top then previous, top = d, w end end
    if previous == name then fail("conflict", ("deployment %s already serves: this run deployed it"):format(name)) end
    jargs.previous = previous or false
    on_rollback("azureml.traffic_back", jargs)
  end
  create_deployment(a, o, name, env_id)
  test_pause("HOIST_TEST_PAUSE_IN_DEPLOY", "with deployment " .. name .. " provisioned")
  local uri = ep and ep.properties and ep.properties.scoringUri
  if not dry_run() then
    local key = key_of(a)
    local v = o.verify or {}
    for i, x in ipairs(o.samples_list) do check_sample(o, uri, key, x, i, name, v.retries or 10) end
    if previous and o.canary > 0 then
      set_traffic(a, { [name] = o.canary, [previous] = 100 - o.canary })
      check_canary(o, uri, key, name)
    end
  end
  local weights = { [name] = 100 }
  if previous then weights[previous] = 0 end
  set_traffic(a, weights)
  test_pause("HOIST_TEST_PAUSE_AFTER_SWITCH", "after all traffic went to " .. name)
  if not dry_run() then
    -- the previous deployment stays for a rollback; older ones without traffic go
    for _, d in ipairs(deployments(a)) do
      if d.name ~= name and d.name ~= previous then delete_deployment(a, d.name) end
    end
  end
  hoist.log.event("azureml.deployed", ("%s%s: deployment %s serves %s (%s)"):format(dry_run() and "dry run: " or "",
    a.name, name, image, tostring(uri)), { name = a.name, deployment = name, image = image })
  return { service = o.service, url = uri, image = image, deployment = name, previous = previous, planned = dry_run() or nil }
end

---@class hoist.targets.azureml.DeployResult: hoist.targets.DeployResult
---@field deployment string the deployment that serves
---@field previous? string the deployment that served before

---@alias hoist.targets.azureml.Options hoist.targets.DeployOptions|{resource_group: string, workspace: string, name?: string, location?: string, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string, instance_type?: string, instance_count?: integer, scoring_path?: string, samples?: string|hoist.targets.azureml.Sample[], canary?: integer, deployment_timeout?: number, registry_server?: string, registry_username?: string, registry_password?: string}

--- Deploys `image` as a new deployment of the online endpoint, holding its ARM-side deploy
--- lock. Raises rollout_failed when the deployment fails to provision (with its logs in
--- details.logs) or a sample's answer is not the expected one; the compensation registered on
--- `ctx` moves the traffic back and deletes the new deployment.
---@param opts hoist.targets.azureml.Options
---@return hoist.targets.azureml.DeployResult
function M.deploy(opts)
  local o = options_of(opts)
  o.name = o.name or o.service
  return azt.holding(M.name, o, deploy, o)
end

--- Checks what serves: every sample request through the scoring URI (with the endpoint key)
--- answers as expected. container@1's verify stage calls it instead of a GET of url..health_path
--- (the scoring URI needs the key). Takes the deploy options.
---@param opts hoist.targets.azureml.Options
---@return {url: string, checked: integer}
function M.verify(opts)
  local o = options_of(opts, "hoist.targets.azureml.verify")
  local c = azt.context("targets.azureml.verify", o)
  local a = { credential = c.credential, subscription = c.subscription, resource_group = o.resource_group,
              workspace = o.workspace, name = c.name, endpoint = o.endpoint }
  local ep = endpoint_of(a)
  if not ep then fail("not_found", ("online endpoint %s not found"):format(a.name)) end
  local key = key_of(a)
  for i, x in ipairs(o.samples_list) do check_sample(o, ep.properties.scoringUri, key, x, i, nil, (o.verify or {}).retries or 10) end
  return { url = ep.properties.scoringUri, checked = #o.samples_list }
end

--- The ARM-side deploy lock of the endpoint (hoist.targets.azure.lock: a tag on its resource group).
---@type fun(opts: hoist.targets.azure.LockOptions): hoist.targets.Lock
M.lock = azt.lock_of(M.name)

--- What the endpoint serves now: its deployments with traffic and the image of the top one.
--- Changes nothing.
---@param opts {service: string, resource_group: string, workspace: string, name?: string, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string}
---@return hoist.targets.Status|{traffic: table<string, integer>}
function M.status(opts)
  local c = azt.context("targets.azureml.status", opts)
  local a = { credential = c.credential, subscription = c.subscription, resource_group = opts.resource_group,
              workspace = opts.workspace, name = c.name, endpoint = opts.endpoint }
  local ws = get(a, ws_path(a), "get workspace " .. tostring(opts.workspace))
  local ep = ws and endpoint_of(a)
  if not ep then return { service = opts.service, serving = false } end
  local traffic, top, best = {}, 0, nil
  for d, w in pairs(ep.properties.traffic or {}) do
    if w > 0 then traffic[d] = w end
    if w > top then top, best = w, d end
  end
  local image
  if best then
    local d = get(a, ep_path(a, "deployments", best), "get deployment " .. best)
    local env = d and get(a, d.properties.environmentId, "get environment of " .. best)
    image = env and env.properties.image
  end
  return { service = opts.service, serving = best ~= nil, image = image, url = ep.properties.scoringUri, traffic = traffic }
end

--- Deletes the online endpoint and its deployments (the workspace and its environments stay),
--- holding the deploy lock. Idempotent.
---@param opts {service: string, resource_group: string, workspace: string, name?: string, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string, lock_timeout?: number}
---@return {removed: string[], planned?: boolean}
function M.remove(opts)
  return azt.removing(M.name, opts, function(c)
    local a = { credential = c.credential, subscription = c.subscription, resource_group = opts.resource_group,
                workspace = opts.workspace, name = c.name, endpoint = opts.endpoint }
    if not get(a, ws_path(a), "get workspace " .. tostring(opts.workspace)) or not endpoint_of(a) then return { removed = {} } end
    local r = call(a, { method = "DELETE", path = ep_path(a), action = "azure.ml.delete_endpoint", missing_ok = true,
                        what = "delete online endpoint " .. a.name })
    return { removed = (r and not r.planned) and { a.name } or {}, planned = r and r.planned or nil }
  end)
end

-- Options a script may pass that are not parameters (an ARM endpoint, a credential object),
-- and the checks before a deploy: those of every Azure target, then the workspace.
M.extra_options = azt.extra_options
--- The Azure actions a deploy with `o` performs in the resource group (the preflight checks
--- the deployer holds them): the workspace's read, the environment version's write, the
--- online endpoint's and its deployments' read, write and delete, the endpoint's keys and the
--- deployment's logs; with registry_username, the workspace connection's write.
---@param o table the deploy options
---@return string[]
function M.actions(o)
  local ws = "Microsoft.MachineLearningServices/workspaces/"
  local out = { ws:sub(1, -2) .. "/read", ws .. "environments/write", ws .. "environments/versions/write" }
  for _, a in ipairs { "read", "write", "delete", "listKeys/action", "deployments/read", "deployments/write",
                       "deployments/delete", "deployments/getLogs/action" } do
    out[#out + 1] = ws .. "onlineEndpoints/" .. a
  end
  if o.registry_username then out[#out + 1] = ws .. "connections/write" end
  return out
end

local azure_preflight = azt.preflight_of(M.name, NS, M.actions)

--- The checks before a deploy, changing nothing (hoist.targets.define wraps it): those of every
--- Azure target (the endpoint name by Azure ML's rule, the credential, the resource group),
--- the sample requests, and the workspace, which must exist.
---@param o hoist.targets.azureml.Options the checked options (no image yet)
---@return string[] checks
function M.preflight(o)
  local checks = azure_preflight(o)
  samples_of(o)
  local c = azt.context("targets.azureml", o)
  local a = { credential = c.credential, subscription = c.subscription, resource_group = o.resource_group,
              workspace = o.workspace, name = c.name, endpoint = o.endpoint }
  local rg = require("hoist.azure").resource_groups.get { name = o.resource_group, subscription = c.subscription,
    credential = c.credential, endpoint = o.endpoint }
  if not (rg and get(a, ws_path(a), "get workspace " .. o.workspace)) then
    fail("invalid_argument", ("targets.azureml: workspace %s does not exist in resource group %s (create it first: "
      .. "it holds the storage, key vault and registry a deploy does not make)"):format(o.workspace, o.resource_group),
      { option = "workspace", exit_code = 2 })
  end
  checks[#checks + 1] = ("workspace %s exists"):format(o.workspace)
  return checks
end
return require("hoist.targets").define(M)
