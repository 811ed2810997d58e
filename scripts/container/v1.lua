-- container@1: from source to a verified deployment. build (git-sha tag, OCI labels) ->
-- scan (Trivy gate) -> push (digest) -> deploy (target) -> verify -> done. A failure after a
-- change rolls back through the target's named compensations; see docs/container.md.
local pipeline = hoist.pipeline
local targets = require "hoist.targets"
local notify = require "hoist.notify"

local SEVERITIES = { "CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN" }
local SPEC = "container@1"

-- What a run holds until it is over (its rollback included), by run id: the deploy lock of
-- its service and the private docker config of its push.
local held = {}

-- The service name docker and the proxy accept: the repository's last path part (a valid
-- repository's path parts are already lower-case letters, digits and separators).
local function default_name(image)
  return hoist.image.parse(image).path:match("([^/]+)$")
end

-- "127.0.0.1:5000/team/app" -> "127.0.0.1:5000"; "docker.io" for a Docker Hub name.
local function registry_host(image) return hoist.image.parse(image).registry end

-- The tags this run builds and pushes, in order (the first is deployed, by digest): `tags`
-- (strategies and literal tags), else `tag`, else `tag_strategy`; `latest` refused for any
-- target but local unless allow_latest (hoist.tags' no-latest-in-production rule, exit 4).
local function tags_of(p)
  local strategy, extra
  if p.tags then
    strategy, extra = hoist.tags.split(p.tags)
  elseif p.tag then
    strategy, extra = {}, { p.tag }
  else
    strategy, extra = p.tag_strategy, {}
  end
  local ok, r = pcall(hoist.tags.for_commit, { dir = p.context, strategy = strategy, extra = extra,
    allow_latest = p.allow_latest, registry_kind = p.target == "local" and "dev" or "production" })
  if ok then return r end
  if hoist.is_error(r, "policy_violation") then
    r.message = ("tag \"latest\" is refused for target %s (rule no-latest-in-production): it moves with every push, "
      .. "so what runs cannot be traced or rolled back; set allow_latest=true to push it anyway (the deploy is by "
      .. "digest either way)"):format(p.target)
  end
  error(r, 0)
end

-- Checks that need more than one parameter, or more than a parameter's own spec (types,
-- allowed values, patterns and ranges are checked by hoist.pipeline from the specs below):
-- all problems at once, exit code 2.
local function check_params(p, building)
  local problems = {}
  local function problem(text) problems[#problems + 1] = text end
  -- the image with Docker's own grammar (hoist.image), so a bad name stops here, before the build
  local ok_ref, ref = pcall(hoist.image.parse, p.image)
  if not ok_ref then
    problem("image: " .. (ref.message or tostring(ref)))
  elseif ref.tag or ref.digest then
    problem(("image: give the repository without tag or digest (e.g. 127.0.0.1:5000/app), got %q"):format(p.image))
  end
  local ok_t, mod = pcall(targets.get, p.target)
  if not ok_t then
    problem(hoist.is_error(mod) and mod.message or tostring(mod)) -- names the target
  else
    for k, spec in pairs(mod.options) do
      if spec.required and p[k] == nil then problem(("%s: required for target %s"):format(k, p.target)) end
    end
  end
  if (p.registry_password == nil) ~= (p.registry_username == nil) then
    problem("registry_username and registry_password: give both or neither")
  end
  if (p.pull_password == nil) ~= (p.pull_username == nil) then
    problem("pull_username and pull_password: give both or neither")
  end
  local remote = p.context:find("://", 1, true) or p.context:match("^git@")
  if not building then -- `artifacts`: nothing is built here
  elseif remote then -- docker build fetches it
  elseif not hoist.fs.exists(p.context) then
    problem(("context: the build folder %s does not exist"):format(p.context))
  elseif p.dockerfile and not hoist.fs.exists(p.dockerfile) then
    problem(("dockerfile: %s does not exist"):format(p.dockerfile))
  elseif not p.dockerfile and not hoist.fs.exists(p.context .. "/Dockerfile") then
    problem(("context: %s has no Dockerfile (give dockerfile=)"):format(p.context))
  end
  if p.tag then
    local ok, why = hoist.tags.validate(p.tag)
    if not ok then problem("tag: " .. why) end
  end
  if p.tags and p.tag then problem("tag and tags: give one of them (tags takes a list, e.g. tags=sha,branch)") end
  local _, extra = hoist.tags.split(p.tags or {})
  for _, tag in ipairs(extra) do
    local ok, why = hoist.tags.validate(tag)
    if not ok then problem(("tags: %s (not a strategy either: %s)"):format(why, table.concat(hoist.tags.strategies, ", "))) end
  end
  if #problems > 0 then
    hoist.error { code = "invalid_argument",
      message = (#problems == 1 and "invalid parameter: " or "invalid parameters: ") .. table.concat(problems, "; "),
      details = { exit_code = 2 } }
  end
  -- `latest` for a production target (exit 4), before the build (tags_of raises it; the build
  -- stage makes the tags themselves)
  local latest = p.tag == "latest"
  for _, tag in ipairs(extra) do latest = latest or tag == "latest" end
  if latest and building then tags_of(p) end
end

-- A docker config folder of this run only (0700, in the run's folder): `docker login`
-- writes the registry password there, never in the user's ~/.docker/config.json.
local function private_docker_config(ctx)
  local base = (ctx.run.dir ~= nil and ctx.run.dir ~= "") and ctx.run.dir
    or hoist.exec({ "mktemp", "-d", "/tmp/hoist-docker-config.XXXXXX", check = true }).stdout:match("%S+")
  local dir = base .. "/docker-config"
  hoist.fs.mkdir(dir, { mode = "0700" })
  local mine = held[ctx.run.id] or {}
  held[ctx.run.id] = mine
  mine.docker_config = { dir = dir, temp = base ~= ctx.run.dir and base or nil }
  return dir
end

-- Removes the run's private docker config, with the credentials docker wrote there.
local function drop_docker_config(run_id)
  local mine = held[run_id]
  local c = mine and mine.docker_config
  if not c then return end
  mine.docker_config = nil
  hoist.exec { "rm", "-rf", c.temp or c.dir }
end

-- The run is over: nothing of it stays held (the deploy locks of all its services).
local function let_go(run_id)
  drop_docker_config(run_id)
  local mine = held[run_id]
  held[run_id] = nil
  for _, lock in pairs(mine and mine.locks or {}) do lock:release() end
end

-- The service's name: the name parameter, else the repository's last path part.
local function service_of(p) return p.name or default_name(p.image) end

-- container@1's own parameters that a target also takes under the same name but must not
-- get from them: `name` (set below when the target has it), the push credential.
local PUSH_ONLY = { name = true, registry_username = true, registry_password = true }

-- What container@1 gives the target: the common options (hoist.targets.options) and the
-- chosen target's own (container@1 declares every target's options as parameters, listed in
-- --help with [target] in front), nothing another target takes.
local function deploy_options(p, extra)
  local mod = targets.get(p.target, SPEC)
  local o = { service = service_of(p), container_port = p.container_port, health_path = p.health_path, env = p.env,
              secret_env = p.secret_env, lock_timeout = p.lock_timeout }
  for k in pairs(mod.options) do
    if o[k] == nil and not PUSH_ONLY[k] then o[k] = p[k] end
  end
  if mod.options.name then o.name = p.name end -- an Azure resource name: the service's
  -- the credential the service pulls with (at every restart, long after this run) is never
  -- the push's (a GITHUB_TOKEN or an ACR refresh token expires): pull_username/pull_password,
  -- else the target's own default (a managed identity, the service principal's own, ...)
  if mod.options.registry_username then
    o.registry_username, o.registry_password = p.pull_username, p.pull_password
  end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- The parameter checks, then the target's preflight (its options, credentials, the resource
-- group or namespace): before the build, so a wrong option fails in a second, not after the
-- build and push. A run with deploy=false never reaches the target: no preflight.
local function check(p, building, deploying)
  check_params(p, building)
  if deploying ~= false then targets.preflight(p.target, deploy_options(p)) end
end

-- The deploy lock of p's service, taken once per run and held until the run is over
-- (summary): verify and a rollback belong to the deploy.
local function take_lock(ctx, p)
  local mine = held[ctx.run.id] or {}
  held[ctx.run.id] = mine
  mine.locks = mine.locks or {}
  local key = p.target .. "/" .. service_of(p)
  if not mine.locks[key] then
    local lock_opts = deploy_options(p, { run = ctx.run.id, timeout = p.lock_timeout })
    for _, k in ipairs { "container_port", "health_path", "env", "secret_env", "lock_timeout", "name" } do lock_opts[k] = nil end
    mine.locks[key] = targets.lock(p.target, lock_opts)
  end
  return mine.locks[key]
end

-- The `artifacts` file: {service name -> image reference by digest}, as `artifacts_out`
-- wrote it. Raises a usage error naming what is wrong with it.
local function read_artifacts(path)
  local function bad(why)
    hoist.error { code = "invalid_argument", message = ("artifacts: %s %s"):format(path, why), details = { exit_code = 2 } }
  end
  local text = hoist.fs.read_file(path, { missing_ok = true })
  if not text then bad("does not exist") end
  local ok, doc = pcall(hoist.json.decode, text)
  if not ok or type(doc) ~= "table" or (next(doc) ~= nil and #doc > 0) then
    bad("is not a JSON object {service name: image reference by digest}")
  end
  for name, ref in pairs(doc) do
    local rok, r = pcall(hoist.image.parse, ref)
    if type(ref) ~= "string" or not rok or not r.digest then
      bad(("holds %s for service %s, not an image reference by digest (repository@sha256:...)"):format(
        hoist.json.encode(ref), tostring(name)))
    end
  end
  return doc
end

-- Writes the `artifacts_out` file: {service name -> image reference by digest} (dry run: a
-- plan step; nothing was pushed).
local function write_artifacts(ctx, path, refs)
  if ctx.dry_run then
    local n = 0
    for _ in pairs(refs) do n = n + 1 end
    ctx:plan { action = "fs.write_file", message = ("write the pushed images' digests of %d service(s) to %s"):format(n, path) }
    return
  end
  hoist.fs.write_file(path, hoist.json.encode(refs, { pretty = true }) .. "\n")
  ctx:summary("Image", ("artifacts written to %s"):format(path))
end

-- How the push logs in: "azure" = an Entra token exchanged for an ACR refresh token
-- (hoist.azure.acr.login: no az, no stored password); "docker" = registry_username or
-- docker's own stored credentials. Default: azure for *.azurecr.io without registry_username.
local function registry_auth(p)
  if p.registry_auth then return p.registry_auth end
  if not p.registry_username and registry_host(p.image):match("%.azurecr%.io$") then return "azure" end
  return "docker"
end

-- Logs docker in to the image's registry for this run (a private config folder), as
-- registry_auth says; returns that folder and the credentials hoist's registry client reads
-- the digest with (nil, nil: docker's stored credentials). Nothing of it outlives the run.
local function registry_login(ctx, p)
  local config, auth
  if registry_auth(p) == "azure" then
    config = not ctx.dry_run and private_docker_config(ctx) or nil
    if not ctx.dry_run then
      hoist.azure.acr.login { registry = registry_host(p.image), credential = p.credential, docker = true, config = config }
    else
      ctx:plan { action = "azure.acr.login", message = "log docker in to " .. registry_host(p.image) .. " with an ACR token" }
    end
  elseif p.registry_username then
    local host = registry_host(p.image)
    config = not ctx.dry_run and private_docker_config(ctx) or nil
    hoist.docker.login { registry = host, username = p.registry_username, password = p.registry_password or "",
                         config = config }
    -- the digest is read back by hoist's own registry client with the same credentials,
    -- given to the call only: nothing of this run's login outlives it
    auth = { username = p.registry_username, password = p.registry_password or "" }
  end
  return config, auth
end

local function verify_settings(p)
  local interval = 0.5
  return { interval = interval, retries = math.max(1, math.ceil(p.verify_timeout / interval)), timeout = 5 }
end

-- Adds every shipped target's own options (besides local's, declared above) to the
-- parameters, marked "[target]" in their description; a parameter container@1 declares
-- itself (name, registry_username, ...) keeps its own spec.
-- A target option's type as a parameter type: the first alternative a parameter can have
-- ("string|table" -> "string", "integer" -> "number"); nil for a Lua-only option ("table").
local PARAM_TYPES = { string = true, number = true, boolean = true, list = true, map = true }
local function param_type(t)
  for alt in tostring(t):gmatch("[^|]+") do
    if alt == "integer" then alt = "number" end
    if PARAM_TYPES[alt] then return alt end
  end
end

local function with_target_options(params)
  local added = {}
  for _, tname in ipairs(targets.names()) do
    if tname ~= "local" then
      for k, spec in pairs(targets.get(tname).options) do
        local ptype = param_type(spec.type)
        if not ptype then
          -- a Lua-only option (a table): a script passes it to the target itself
        elseif not params[k] then
          local copy = {}
          for f, v in pairs(spec) do copy[f] = v end
          copy.type = ptype
          copy.required = nil -- required by that target only: checked by it
          copy.description = ("[%s] %s"):format(tname, spec.description)
          params[k], added[k] = copy, { tname }
        elseif added[k] then
          added[k][#added[k] + 1] = tname
          params[k].description = ("[%s] %s"):format(table.concat(added[k], ", "), spec.description)
        end
      end
    end
  end
  return params
end

---------------------------------------------------------------- the stages of one service

-- The stages of a run of one service. A run with `services` calls them once per build or
-- per service (below), with a context of that service's own (service_ctx).
local single = {}

function single.build(ctx)
  local p = ctx.params
  if p.artifacts then return { artifacts = p.artifacts } end -- built in the run that wrote it
  check_params(p, true)
  local tags = tags_of(p)
  local refs = hoist.tags.refs(p.image, tags)
  -- the build cache comes from the registry (a fresh CI runner's engine is empty): log
  -- in first, as the push does
  local config = #p.cache_from > 0 and registry_login(ctx, p) or nil
  local built = hoist.docker.build {
    context = p.context, file = p.dockerfile, tags = refs, build_args = p.build_args,
    cache_from = p.cache_from, cache_to = p.cache_to, config = config,
    labels = { ["org.opencontainers.image.version"] = tags[1],
               ["org.opencontainers.image.title"] = p.name or default_name(p.image) },
  }
  ctx:summary("Image", { table.concat(refs, ", "), "image id " .. tostring(built.id) })
  return { image = refs[1], refs = refs, tag = tags[1], id = built.id }
end

function single.scan(ctx)
  local p = ctx.params
  if p.artifacts then return { ran = false, artifacts = p.artifacts } end -- gated in the run that wrote it
  local image = ctx.outputs.build.image
  if ctx.dry_run then
    if p.scan ~= "off" then
      ctx:plan { action = "trivy.scan", message = ("scan %s; fail on %s"):format(image, table.concat(p.fail_on, ",")) }
    end
    return { ran = false, planned = true }
  end
  local r = hoist.trivy.gate_scan { image = image, mode = p.scan, fail_on = p.fail_on,
                                    ignore_unfixed = p.ignore_unfixed, sarif = p.sarif }
  if r.sarif then ctx:summary("Scan", "SARIF: " .. r.sarif) end
  if r.warning then ctx:summary("Scan", r.warning) end
  if r.ran then
    local counts = r.report and r.report.counts or {}
    local parts = {}
    for _, s in ipairs(SEVERITIES) do parts[#parts + 1] = ("%s %d"):format(s, counts[s] or 0) end
    ctx:summary("Scan", ("passed (fail on %s): %s"):format(table.concat(p.fail_on, ","), table.concat(parts, ", ")))
  end
  return { ran = r.ran, mode = r.mode, counts = r.report and r.report.counts or nil, sarif = r.sarif }
end

-- The image a service deploys from the `artifacts` file (`doc`: the file read once by the
-- caller, else read here): its reference by digest.
local function recorded(p, name, doc)
  local ref = (doc or read_artifacts(p.artifacts))[name]
  if not ref then
    hoist.error { code = "invalid_argument", message = ("artifacts: %s records no image for service %s"):format(p.artifacts, name),
                  details = { exit_code = 2 } }
  end
  return { digest = hoist.image.parse(ref).digest, reference = ref, artifacts = p.artifacts }
end

function single.push(ctx, no_artifacts_out)
  local p = ctx.params
  if p.artifacts then return recorded(p, service_of(p)) end
  local image = ctx.outputs.build.image
  local config, auth = registry_login(ctx, p)
  local ok, pushed = pcall(function()
    local first = hoist.docker.push { image = image, config = config, auth = auth }
    for i = 2, #ctx.outputs.build.refs do hoist.docker.push { image = ctx.outputs.build.refs[i], config = config, auth = auth } end
    return first
  end)
  drop_docker_config(ctx.run.id)
  if not ok then error(pushed, 0) end
  local reference = pushed.reference or image -- dry-run: no digest, deploy the tag
  ctx:summary("Image", "pushed " .. reference)
  if p.artifacts_out and not no_artifacts_out then write_artifacts(ctx, p.artifacts_out, { [service_of(p)] = reference }) end
  return { digest = pushed.digest, reference = reference }
end

function single.deploy(ctx)
  local p = ctx.params
  local target = targets.get(p.target, SPEC)
  take_lock(ctx, p)
  local r = target.deploy(deploy_options(p, { ctx = ctx, image = ctx.outputs.push.reference, verify = verify_settings(p) }))
  ctx:summary("Deployment", { ("%s %s %s"):format(r.service, ctx.dry_run and "would serve at" or "serves",
                                tostring(r.url or "its URL")), "image " .. tostring(r.image),
                              "replaced " .. (r.previous or (ctx.dry_run and "what serves now" or "nothing (first deploy)")) })
  return { service = r.service, url = r.url, upstream = r.upstream, previous = r.previous, planned = r.planned }
end

function single.verify(ctx)
  local p = ctx.params
  if ctx.dry_run then -- nothing was deployed: the URL may not exist yet
    local at = (ctx.outputs.deploy.url or ("the URL of " .. ctx.outputs.deploy.service)) .. p.health_path
    ctx:plan { action = "verify.http", message = ("check GET %s answers 200 (within %gs)"):format(at, p.verify_timeout) }
    return { url = at, planned = true }
  end
  local v = verify_settings(p)
  local target = targets.get(p.target, SPEC)
  if target.verify then -- the target checks what serves itself (azureml: samples with the endpoint key)
    local r = target.verify(deploy_options(p, { image = ctx.outputs.push.reference, verify = v }))
    return { url = r.url, checked = r.checked }
  end
  local url = ctx.outputs.deploy.url .. p.health_path
  local r = hoist.verify.http { name = "service " .. url, url = url, expect_status = 200,
                                retries = v.retries, interval = v.interval, timeout = v.timeout }
  return { url = url, attempts = r.attempts, latency = r.latency }
end

function single.done(ctx)
  local o = ctx.outputs
  ctx:summary(("%s %s: %s -> %s"):format(o.push.reference, ctx.dry_run and "would be deployed" or "deployed",
    o.deploy.service, tostring(o.deploy.url or "its URL")))
  return { image = o.push.reference, digest = o.push.digest, url = o.deploy.url, service = o.deploy.service,
           sarif = o.scan.sarif }
end

---------------------------------------------------------------- many services (services)

-- A run with `services` deploys each entry (a table of container@1's own parameters, the
-- top-level ones its defaults: hoist.pipeline checks each like a run's) with the stages
-- above: one build, scan and push per distinct build, then the deploys in parallel (at most
-- `concurrency` at once), each holding its service's deploy lock, then the checks. One
-- journal: a failure rolls back every service the run changed.
local fleet = {}

-- The parameters that belong to the run, never to one of its services.
local RUN_ONLY = { services = true, only = true, concurrency = true, artifacts = true, artifacts_out = true, deploy = true }
for k in pairs(notify.params) do RUN_ONLY[k] = true end

-- The entries this run deploys: `services`, sliced by `only`, in their order.
local function selected(p)
  if not p.only or #p.only == 0 then return p.services end
  local want, out = {}, {}
  for _, n in ipairs(p.only) do want[n] = true end
  for _, e in ipairs(p.services) do
    if want[e.name] then out[#out + 1] = e end
  end
  return out
end

-- A stage's timeout for a run: `seconds` for each round of work it does. A single run is one
-- round; with services, one round per `concurrency` services (ceil(n / concurrency)), so a
-- fleet of slow cloud deploys gets the time its rounds need, as each service would alone.
local function per_round(seconds)
  return function(p)
    if not p.services then return seconds end
    return seconds * math.max(1, math.ceil(#selected(p) / math.max(1, p.concurrency or 1)))
  end
end

-- What makes an image: entries equal in these build it once; two entries that push the same
-- repository and tags must agree on them (else the second build would replace the first's).
local BUILD = { "image", "context", "dockerfile", "build_args", "tag", "tags", "tag_strategy", "allow_latest",
                "cache_from", "cache_to", "registry_auth", "registry_username" }
-- ... and what gates and pushes it: equal in these too, one build, scan and push serves them all.
local GATE = { "scan", "fail_on", "ignore_unfixed", "sarif" }

local function key_of(p, fields)
  local t = {}
  for _, k in ipairs(fields) do t[k] = p[k] end
  return hoist.json.encode(t)
end

-- The distinct builds of `entries`, in order: {p = the first entry's params, names = {...}, label}.
local function builds(entries)
  local out, by_key = {}, {}
  for _, e in ipairs(entries) do
    local key = key_of(e, BUILD) .. key_of(e, GATE)
    local g = by_key[key]
    if not g then
      g = { p = e, names = {} }
      by_key[key], out[#out + 1] = g, g
    end
    g.names[#g.names + 1] = e.name
  end
  for _, g in ipairs(out) do g.label = table.concat(g.names, ", ") end
  return out
end

-- The stage context of one service (or one build of several): its own params and outputs;
-- its compensations, plan steps and summary lines go to the run's, the lines marked with it.
local function service_ctx(ctx, p, outputs, label)
  local s = setmetatable({ params = p, outputs = outputs }, { __index = ctx })
  local mark = "[" .. (label or p.name) .. "] "
  function s.summary(_, section_or_line, lines)
    if lines == nil then return ctx:summary(ctx.stage, mark .. tostring(section_or_line)) end
    local marked = {}
    for i, l in ipairs(type(lines) == "table" and lines or { lines }) do marked[i] = mark .. tostring(l) end
    return ctx:summary(section_or_line, marked)
  end
  return s
end

-- What a fleet run knows of each service as it goes (for the Services summary, also when it fails).
local function progress(ctx)
  local mine = held[ctx.run.id] or {}
  held[ctx.run.id] = mine
  mine.fleet = mine.fleet or { status = {}, image = {}, url = {} }
  return mine.fleet
end

-- Runs fn(e) for each entry, at most `concurrency` at once; an error names its service.
local function each_service(ctx, entries, fn)
  return hoist.map(entries, function(e)
    local ok, r = pcall(fn, e)
    if ok then return r end
    local err = hoist.is_error(r) and r or hoist.new_error { code = "internal", message = tostring(r) }
    if hoist.is_error(err, "cancelled") then error(err, 0) end -- another service's failure, or SIGTERM
    progress(ctx).status[e.name] = "failed"
    err.message = ("service %s: %s"):format(e.name, tostring(err.message))
    err.details = err.details or {}
    err.details.service = e.name
    error(err, 0)
  end, { limit = ctx.params.concurrency })
end

function fleet.build(ctx)
  local p = ctx.params
  local out = { services = {} }
  if p.artifacts then return { artifacts = p.artifacts, services = {} } end
  local list = builds(selected(p))
  for _, g in ipairs(list) do
    local r = single.build(service_ctx(ctx, g.p, {}, g.label))
    for _, n in ipairs(g.names) do out.services[n] = r end
  end
  out.images = #list
  return out
end

-- Every build's scan gates before anything is pushed (this stage ends before push starts).
function fleet.scan(ctx)
  local p = ctx.params
  if p.artifacts then return { ran = false, artifacts = p.artifacts, services = {} } end
  local list = builds(selected(p))
  local results = hoist.map(list, function(g)
    return single.scan(service_ctx(ctx, g.p, { build = ctx.outputs.build.services[g.names[1]] }, g.label))
  end, { limit = p.concurrency })
  local out = { services = {} }
  for i, g in ipairs(list) do
    for _, n in ipairs(g.names) do out.services[n] = results[i] end
  end
  return out
end

function fleet.push(ctx)
  local p = ctx.params
  local out, refs = { services = {} }, {}
  if p.artifacts then
    local doc = read_artifacts(p.artifacts) -- once for all the services
    for _, e in ipairs(selected(p)) do out.services[e.name] = recorded(p, e.name, doc) end
  else
    -- one after another: a push logs in to the run's one private docker config
    for _, g in ipairs(builds(selected(p))) do
      local r = single.push(service_ctx(ctx, g.p, { build = ctx.outputs.build.services[g.names[1]] }, g.label), true)
      for _, n in ipairs(g.names) do out.services[n] = r end
    end
  end
  local seen = progress(ctx)
  for n, r in pairs(out.services) do refs[n], seen.image[n] = r.reference, r.reference end
  if p.artifacts_out then write_artifacts(ctx, p.artifacts_out, refs) end
  return out
end

-- Takes the deploy locks of `entries` in one order every run agrees on (target/service),
-- each after the one before it: a run waits for a lock holding only locks that sort before
-- it, so two runs naming some of the same services never wait for each other in a circle.
-- Returns per service a task that ends once its lock is held, and all of them.
local function ordered_locks(ctx, entries)
  local sorted = {}
  for i, e in ipairs(entries) do sorted[i] = e end
  table.sort(sorted, function(a, b) return a.target .. "/" .. a.name < b.target .. "/" .. b.name end)
  local by_name, all, before = {}, {}, nil
  for _, e in ipairs(sorted) do
    local prev = before
    before = hoist.spawn(function()
      if prev then prev:wait() end
      take_lock(ctx, e)
    end)
    by_name[e.name], all[#all + 1] = before, before
  end
  return by_name, all
end

function fleet.deploy(ctx)
  local p = ctx.params
  local entries = selected(p)
  local seen = progress(ctx)
  local locked, all = ordered_locks(ctx, entries)
  local ok, results = pcall(each_service, ctx, entries, function(e)
    seen.status[e.name] = "waiting for its deploy lock"
    locked[e.name]:wait()
    seen.status[e.name] = "deploying"
    local r = single.deploy(service_ctx(ctx, e, { push = ctx.outputs.push.services[e.name] }))
    seen.status[e.name], seen.url[e.name] = "deployed", r.url
    return r
  end)
  -- a lock still awaited is not wanted any more (a service failed, or SIGTERM)
  for _, t in ipairs(all) do t:cancel() end
  hoist.shielded(function()
    for _, t in ipairs(all) do pcall(t.wait, t) end
  end)
  if not ok then error(results, 0) end
  local out = { services = {} }
  for i, e in ipairs(entries) do out.services[e.name] = results[i] end
  return out
end

function fleet.verify(ctx)
  local p = ctx.params
  local entries = selected(p)
  local results = each_service(ctx, entries, function(e)
    local o = { push = ctx.outputs.push.services[e.name], deploy = ctx.outputs.deploy.services[e.name] }
    return single.verify(service_ctx(ctx, e, o))
  end)
  local out = { services = {} }
  for i, e in ipairs(entries) do out.services[e.name] = results[i] end
  return out
end

-- The outputs: one row per service, in the order of `services`.
function fleet.done(ctx)
  local o = ctx.outputs
  local rows = {}
  for i, e in ipairs(selected(ctx.params)) do
    local pushed = o.push.services[e.name]
    rows[i] = { name = e.name, target = e.target, image = pushed.reference, digest = pushed.digest,
                url = o.deploy.services[e.name].url, status = ctx.dry_run and "planned" or "deployed" }
  end
  return { services = hoist.json.array(rows) }
end

-- How a service the run changed ended, by the run's status.
local UNDONE = { rolled_back = "rolled back", rollback_failed = "rollback incomplete", failed = "failed" }

-- The Services section of the summary and report: each service, how it ended, its image and URL.
local function services_summary(ctx, result)
  local seen = progress(ctx)
  local lines = {}
  for _, e in ipairs(selected(ctx.params)) do
    local status = seen.status[e.name]
    if ctx.dry_run then status = "planned"
    elseif status == "deployed" or status == "deploying" then
      -- a deploy cut short (another service failed, SIGTERM) is undone like a finished one
      status = (UNDONE[result.status] and status == "deploying") and "cancelled, " .. UNDONE[result.status]
        or UNDONE[result.status] or status
    elseif status ~= "failed" then status = ctx.params.deploy == false and "pushed, not deployed (deploy=false)" or "not deployed" end
    lines[#lines + 1] = ("%s (%s): %s, image %s%s"):format(e.name, e.target, status, seen.image[e.name] or "-",
      seen.url[e.name] and (", " .. seen.url[e.name]) or "")
  end
  ctx:summary("Services", lines)
end

-- A stage of either kind of run: of many services (`services`) or of one.
local function stage(name)
  return function(ctx) return (ctx.params.services and fleet or single)[name](ctx) end
end

-- The checks of a run with `services`, before anything changes: `only` names services, each
-- selected entry passes the checks of a run of its own (check_params, the target's
-- preflight), two entries that push the same image build it the same way, two on target
-- local do not share a port, and `artifacts` records each selected service. All problems at
-- once, each naming its entry (exit code 2).
local function check_fleet(p)
  local problems = {}
  local function problem(text) problems[#problems + 1] = text end
  if not p.services then
    if p.only and #p.only > 0 then problem("only: it selects entries of services, and this run has no services") end
  else
    local names, known = {}, {}
    for i, e in ipairs(p.services) do names[i], known[e.name] = e.name, i end
    for _, n in ipairs(p.only or {}) do
      if not known[n] then problem(("only: no service named %q (services: %s)"):format(n, table.concat(names, ", "))) end
    end
    local building = not p.artifacts
    local images, ports = {}, {}
    for _, e in ipairs(selected(p)) do
      local label = ("services[%d] (%s)"):format(known[e.name], e.name)
      local ok, err = pcall(check, e, building, p.deploy)
      if not ok then
        if not hoist.is_error(err, "invalid_argument") then -- a policy (exit 4), an unreachable service
          err.message = label .. ": " .. tostring(err.message)
          error(err, 0)
        end
        problem(label .. ": " .. tostring(err.message):gsub("^invalid parameters?: ", ""))
      end
      local same = building and images[e.image]
      if same and same.build ~= key_of(e, BUILD) then
        problem(("%s: pushes %s as %s does, built differently (context, dockerfile, build_args, tags): give it an image of its own")
          :format(label, e.image, same.label))
      elseif building and not same then
        images[e.image] = { build = key_of(e, BUILD), label = label }
      end
      if e.target == "local" then
        if ports[e.port] then problem(("%s: port %d is %s's too"):format(label, e.port, ports[e.port])) end
        ports[e.port] = ports[e.port] or label
      end
    end
  end
  if p.deploy == false and p.artifacts then
    problem("deploy=false with artifacts: nothing would be built and nothing deployed")
  end
  if p.artifacts and p.artifacts_out then
    problem("artifacts_out: a run with artifacts pushes nothing (the file it would write is the one it reads)")
  end
  if p.artifacts then
    local ok, doc = pcall(read_artifacts, p.artifacts)
    if not ok then
      problem(tostring(doc.message or doc))
    else
      local missing, have = {}, {}
      local named, one = pcall(service_of, p)
      for _, e in ipairs(p.services and selected(p) or { { name = named and one or nil } }) do
        if e.name and not doc[e.name] then missing[#missing + 1] = e.name end
      end
      for n in pairs(doc) do have[#have + 1] = n end
      table.sort(have)
      if #missing > 0 then
        problem(("artifacts: %s records no image for service(s) %s (it holds: %s)"):format(p.artifacts,
          table.concat(missing, ", "), #have > 0 and table.concat(have, ", ") or "none"))
      end
    end
  end
  if #problems > 0 then
    hoist.error { code = "invalid_argument", details = { exit_code = 2 },
      message = (#problems == 1 and "invalid parameter: " or "invalid parameters: ") .. table.concat(problems, "; ") }
  end
  if not p.services then check(p, not p.artifacts, p.deploy) end
end

---------------------------------------------------------------- the pipeline

local PARAMS = notify.with_params(with_target_options {
    context = { type = "string", default = ".", description = "Build context folder" },
    dockerfile = { type = "string", description = "Dockerfile (default: <context>/Dockerfile)" },
    image = { type = "string", required = true,
              description = "Repository to push to, without tag or digest (e.g. 127.0.0.1:5000/app)" },
    tag = { type = "string", description = "Image tag (default: from tag_strategy, the commit's short sha)" },
    tags = { type = "list", description = "Tags to build and push, the first deployed: strategies (sha, semver, "
               .. "env-date, branch) and literal tags, e.g. sha,branch,latest (latest needs allow_latest for any "
               .. "target but local)" },
    tag_strategy = { type = "list", default = { "sha" }, allowed = hoist.tags.strategies,
                     description = "How tags are made from the commit (hoist.tags.for_commit): sha, semver, env-date, branch" },
    allow_latest = { type = "boolean", default = false,
                     description = "Push the tag latest for a target other than local (refused by default: it moves "
                       .. "with every push; the deploy itself is always by digest)" },
    build_args = { type = "map", default = {}, description = "Docker build arguments NAME=value (stored in the image: no secrets)" },
    cache_from = { type = "list", default = {}, description = "Images whose layers the build reuses, e.g. the "
                     .. "branch's last push (image:main); pulled from the registry first with the classic builder (one "
                     .. "missing is warned about); BuildKit cache specs (type=registry,ref=...) with BuildKit" },
    cache_to = { type = "list", default = {}, description = "BuildKit cache exports (type=inline, "
                   .. "type=registry,ref=...,mode=max); refused with the classic builder" },
    target = { type = "string", default = "local", allowed = targets.names(),
               description = ("Where to deploy: %s (local: the local Docker engine; aci: Azure Container Instances; "
                 .. "appservice: Azure App Service; containerapp: Azure Container Apps; azureml: an Azure Machine Learning "
                 .. "online endpoint; kubernetes: a kubeconfig "
                 .. "context; aks: an AKS cluster); options marked [target] are that target's"):format(
                 table.concat(targets.names(), ", ")) },
    registry_auth = { type = "string", allowed = { "docker", "azure" },
                      description = "How the push logs in: azure (an ACR token from the Azure credential) or docker "
                        .. "(registry_username, else docker's stored credentials); default azure for *.azurecr.io" },
    name = { type = "string", pattern = "[%w][%w_.%-]*", max_length = 128,
             hint = "a name of letters, digits, '_', '.' and '-' starting with a letter or digit",
             description = "Service name, also the container's, container group's or app's (default: the image's last path part)" },
    port = { type = "number", default = 8080, integer = true, min = 1, max = 65535,
             description = "[local] Service port on 127.0.0.1 (served by hoist proxy)" },
    container_port = { type = "number", default = 8080, integer = true, min = 1, max = 65535,
                       description = "Port the app listens on inside the container" },
    health_path = { type = "string", default = "/health", pattern = "/[^%s]*", hint = "a path starting with '/'",
                    description = "GET path that answers 200 when the app is healthy" },
    env = { type = "map", default = {}, description = "Container environment NAME=value (recorded in the journal: no secrets)" },
    secret_env = { type = "map", secret = true, env = "HOIST_SECRET_ENV",
                   description = "Container environment whose values are secrets: masked in every output, "
                     .. "passed through a 0600 env file, kept for rollback in a 0600 file of the state folder" },
    scan = { type = "string", default = "required", allowed = { "required", "if_available", "off" },
             description = "Image scan: required (no scanner = refused), if_available (warn and go on), off" },
    fail_on = { type = "list", default = { "CRITICAL" }, allowed = SEVERITIES,
                description = "Severities that stop the pipeline before the push" },
    ignore_unfixed = { type = "boolean", default = false, description = "Findings without a fix do not fail the scan" },
    sarif = { type = "string", description = "Write the scan's SARIF to this file (for GitHub code scanning), from the "
                .. "same scan as the gate (trivy convert), also when the gate fails; the scan stage's output sarif" },
    registry_username = { type = "string", env = "HOIST_REGISTRY_USERNAME",
                          description = "Registry user for the push (else docker's stored credentials); never given to the target" },
    registry_password = { type = "string", secret = true, env = "HOIST_REGISTRY_PASSWORD",
                          description = "Registry password or token for the push (prefer the environment variable)" },
    pull_username = { type = "string", env = "HOIST_PULL_USERNAME",
                      description = "[aci, appservice, containerapp, azureml] Registry user the service pulls the image with at every restart (default: the target's: a managed identity or the service principal's own); a credential that does not expire" },
    pull_password = { type = "string", secret = true, env = "HOIST_PULL_PASSWORD",
                      description = "[aci, appservice, containerapp, azureml] Its password (prefer the environment variable); never a token that expires (refused)" },
    verify_timeout = { type = "number", default = 60, min = 0.001, description = "Seconds the new container has to become healthy" },
    drain = { type = "number", default = 2, min = 0,
              description = "[local] Seconds the old container keeps its open connections after the switch" },
    lock_timeout = { type = "number", default = 300, min = 0,
                     description = "Seconds to wait while another run deploys the same service, then fail with conflict" },
})

-- What one entry of `services` may set: every parameter but the run's own.
local SERVICE_FIELDS = {}
for k, spec in pairs(PARAMS) do
  if not RUN_ONLY[k] then SERVICE_FIELDS[k] = spec end
end
SERVICE_FIELDS.name = {}
for f, v in pairs(PARAMS.name) do SERVICE_FIELDS.name[f] = v end
SERVICE_FIELDS.name.required = true
SERVICE_FIELDS.name.description = "The service's name (required in each entry, unique)"

PARAMS.services = { type = "list", items = "table", fields = SERVICE_FIELDS, key = "name", inherit = true, max_items = 200,
                    description = "Deploy many services in one run (--params-file): a list of tables of this pipeline's "
                      .. "own parameters, one per service, each with its name; the top-level parameters are every "
                      .. "entry's defaults. One build per distinct image, deploys in parallel (concurrency), one report; "
                      .. "a failure rolls back every service the run changed" }
PARAMS.only = { type = "list", pattern = "[%w][%w_.%-]*", hint = "a service name",
                description = "With services: deploy only these (names of entries of services)" }
PARAMS.concurrency = { type = "number", default = 4, integer = true, min = 1, max = 64,
                       description = "With services: how many services deploy (and verify) at once" }
PARAMS.artifacts_out = { type = "string", description = "After the push, write {service name: image reference by digest} "
                           .. "as JSON to this file, for a later run's artifacts" }
PARAMS.deploy = { type = "boolean", default = true,
                  description = "false: build, scan and push only (with artifacts_out, the digests later runs deploy by "
                    .. "artifacts: hoist plan --matrix's build once); the target is not touched" }
PARAMS.artifacts = { type = "string", description = "Skip build, scan and push: deploy each service's image recorded in "
                       .. "this file (artifacts_out of an earlier run, whose scan gated it)" }

-- deploy=false (a build-once run): the stages from deploy on are skipped.
local function deploying(ctx) return ctx.params.deploy ~= false end

return pipeline.define {
  name = "container",
  version = "1.3.0",
  requires = ">=0.1 <2",
  description = "Build, scan, push, deploy and verify a container image, or many services (targets: "
    .. table.concat(targets.names(), ", ") .. ")",
  -- Cross-parameter checks, run before anything changes (the build stage calls check_params too).
  check = check_fleet,
  -- Called once the run is over, after its rollback if any: only then may another run
  -- deploy the service (a rollback is part of this run's deploy).
  summary = function(ctx, result)
    if ctx.params.services then services_summary(ctx, result) end
    let_go(ctx.run.id)
  end,
  -- The notify* parameters (hoist.notify): once the run is over, its rollback included, the
  -- channels hear how it ended, with what this pipeline knows of the deploy.
  notify = function(p)
    -- the target checks the new version in its deploy (before it takes traffic), then verify
    return notify.from_params(p, { verify_stages = { "deploy", "verify" }, facts = function(result)
      local o = result.outputs
      if p.services then
        local names = {}
        for i, e in ipairs(selected(p)) do names[i] = e.name end
        return { target = p.target, service = table.concat(names, ", ") }
      end
      return { target = p.target, service = service_of(p), url = o.deploy and o.deploy.url,
               image = o.push and o.push.reference or (o.build and o.build.image), digest = o.push and o.push.digest }
    end })
  end,
  params = PARAMS,
  stages = {
    { name = "build", timeout = per_round(1800), run = stage("build"),
      description = "docker build, tagged from the commit, with OCI labels (services: once per distinct image)" },
    { name = "scan", timeout = per_round(900), run = stage("scan"),
      description = "Trivy scan of the built image, gated by fail_on before anything is pushed" },
    { name = "push", timeout = per_round(900), retry = { attempts = 3, backoff = 2 }, run = stage("push"),
      description = "docker push; the digest is read back from the registry" },
    { name = "deploy", timeout = per_round(900), run = stage("deploy"), when = deploying,
      description = "Take the service's deploy lock; deploy the image to the target, which checks the new version "
        .. "before it takes traffic (local: beside the old container, then the port switches); services: in parallel" },
    { name = "verify", timeout = per_round(300), run = stage("verify"), when = deploying,
      description = "The service's URL answers health_path with 200 (a target with its own check, azureml: its sample requests)" },
    { name = "done", run = stage("done"), when = deploying, description = "Outputs and summary" },
  },
}
