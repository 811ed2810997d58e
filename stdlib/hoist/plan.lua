--- hoist.plan: `hoist plan --matrix`. hoist does not schedule work across machines: it hands
--- a fleet's fan-out to the engines its users already run. A plan cuts the services of a
--- params file (or its `targets`) into slices that never share a service, and writes them as
--- a GitHub Actions matrix (`strategy.matrix` JSON with `max-parallel`) or as Kubernetes Jobs
--- (one batch/v1 Job per slice, the same hoist image, credentials by secret reference only),
--- each slice running `hoist run PIPELINE ... --set only=a,b`. docs/plan.md.
local util = require "hoist.util"
local json = require "hoist.json"

local M = {}

--- Settings of a plan when the command line leaves them out.
M.defaults = {
  format = "github",
  -- The build-once file: the build job writes it (artifacts_out), every slice deploys from it.
  artifacts = "hoist-artifacts.json",
  -- The Secret whose keys become the Job's environment (envFrom) when no --secret is given.
  secret = "hoist-credentials",
  -- Where a Job finds the ConfigMap's files (the params file, the artifacts).
  mount = "/etc/hoist",
  -- A finished Job and its pod stay a day for their logs, then Kubernetes removes them.
  ttl = 86400,
}

local function usage_error(message, details)
  details = details or {}
  details.exit_code = 2
  util.fail("invalid_argument", message, details)
end

local function dns_label(s)
  return s:lower():gsub("[^a-z0-9%-]+", "-"):gsub("^%-+", ""):gsub("%-+$", "")
end

-- The pipeline's definition: a bundled NAME[@VERSION] or a pipeline file.
local function definition(spec)
  if type(spec) ~= "string" or spec == "" then usage_error("plan: the pipeline to run is required (hoist plan --matrix PIPELINE)") end
  if spec:find("/", 1, true) or spec:match("%.lua$") then
    local chunk, err = loadfile(spec)
    if not chunk then usage_error(("plan: cannot load pipeline file %s: %s"):format(spec, tostring(err))) end
    local def = chunk({})
    if not require("hoist.pipeline").is_pipeline(def) then
      usage_error(("plan: %s does not return a pipeline definition (hoist.pipeline.define{...})"):format(spec))
    end
    return def
  end
  local _, def = require("hoist.scripts").resolve(spec)
  return def
end

-- The names of the entries of a list, each named once: a service (or target) named twice
-- would be deployed by two slices at once.
local function names_of(list, what, file)
  if type(list) ~= "table" or json.kind(list) == "object" or (next(list) ~= nil and #list == 0) then
    usage_error(("plan: %s in %s must be a list"):format(what, file))
  end
  local names, first = {}, {}
  for i, entry in ipairs(list) do
    local name = type(entry) == "table" and entry.name or entry
    if type(name) ~= "string" or name == "" then
      usage_error(("plan: %s[%d] in %s has no name (each entry needs \"name\")"):format(what, i, file))
    end
    if first[name] then
      usage_error(("plan: %s names %q twice (entries %d and %d) in %s: two slices would deploy it at once; name it once")
        :format(what, name, first[name], i, file), { name = name })
    end
    first[name] = i
    names[#names + 1] = name
  end
  return names
end

--- Cuts names into slices, in their order, none in two slices: `slice_size` names per slice
--- (the last may hold fewer), or `slices` slices of sizes that differ by one at most; one
--- name per slice when neither is given. Out-of-range sizes raise invalid_argument (exit 2).
---@param names string[]
---@param o {slice_size?: integer, slices?: integer}
---@return string[][]
function M.slices(names, o)
  local n = #names
  if o.slice_size and o.slices then usage_error("plan: give --slice-size or --slices, not both") end
  local size = o.slice_size or 1
  if o.slices then
    if math.floor(o.slices) ~= o.slices or o.slices < 1 or o.slices > n then
      usage_error(("plan: --slices %s is out of range: 1 to %d (the number of services)"):format(tostring(o.slices), n))
    end
    local out, at = {}, 1
    for i = 1, o.slices do
      local count = math.floor(n / o.slices) + (i <= n % o.slices and 1 or 0)
      local s = {}
      for j = at, at + count - 1 do s[#s + 1] = names[j] end
      out[i], at = s, at + count
    end
    return out
  end
  if math.floor(size) ~= size or size < 1 or size > n then
    usage_error(("plan: --slice-size %s is out of range: 1 to %d (the number of services)"):format(tostring(size), n))
  end
  local out = {}
  for i = 1, n, size do
    local s = {}
    for j = i, math.min(i + size - 1, n) do s[#s + 1] = names[j] end
    out[#out + 1] = s
  end
  return out
end

-- "--set k=v" pairs of the plan's own --set flags, in their order.
local function set_args(sets)
  local out = {}
  for _, s in ipairs(sets or {}) do
    out[#out + 1] = "--set"
    out[#out + 1] = s
  end
  return out
end

local function append(list, ...)
  for _, v in ipairs { ... } do list[#list + 1] = v end
  return list
end

---@class hoist.PlanSlice
---@field id string "1", "2", ... or the target's name
---@field services string[] the services it deploys (empty: all of them, for a target slice)
---@field target? string
---@field argv string[] `hoist run ...` of the slice, after "hoist"

---@class hoist.Plan
---@field pipeline string
---@field params_file string
---@field name string the plan's name (labels, Job names)
---@field slices hoist.PlanSlice[]
---@field max_parallel integer
---@field build? {argv: string[], artifacts: string} the build-once run, when the pipeline builds
---@field secret_params table<string, string> the pipeline's secret parameters and the variables they are read from

--- Plans the fan-out of a pipeline over a params file's `services` (or `targets`): slices
--- that never share a service, each with its `hoist run` command line; when the pipeline
--- builds (it declares `artifacts_out` and `artifacts` and none is given), a build run that
--- writes the digests once and slices that deploy them. Bad input raises invalid_argument
--- with exit code 2: no services, a service named twice, a slice option out of range, an
--- unknown pipeline.
---@param o {pipeline: string, params_file: string, params: table, sets?: string[], max_parallel?: integer, slice_size?: integer, slices?: integer, name?: string, artifacts?: string}
---@return hoist.Plan
function M.matrix(o)
  local def = definition(o.pipeline)
  local file = o.params_file
  if type(file) ~= "string" or file == "" then usage_error("plan: --params-file is required: it names the services to slice") end
  local params = o.params or {}
  local declared = def.params or {}
  for _, s in ipairs(o.sets or {}) do
    local k, v = s:match("^([^=]+)=(.*)$")
    if k then params[k] = v end
  end
  if params.only ~= nil then
    usage_error("plan: `only` is what each slice sets (--set only=a,b); leave it out of the plan's parameters")
  end
  local ids, targets
  if params.targets ~= nil then
    if params.services ~= nil then usage_error(("plan: %s has both services and targets: slice by one of them"):format(file)) end
    if not declared.targets then
      usage_error(("plan: pipeline %s has no `targets` parameter: each slice's run would refuse the params file's targets list")
        :format(o.pipeline))
    end
    targets = names_of(params.targets, "targets", file)
  else
    if params.services == nil or (type(params.services) == "table" and next(params.services) == nil) then
      usage_error(("plan: %s names no services (a \"services\" list) and no targets: nothing to fan out"):format(file))
    end
    if not declared.only then
      usage_error(("plan: pipeline %s has no `only` parameter: it cannot deploy a slice of the services"):format(o.pipeline))
    end
    ids = names_of(params.services, "services", file)
  end
  local plan = { pipeline = o.pipeline, params_file = file, slices = {}, secret_params = {} }
  plan.name = o.name or ("hoist-" .. dns_label(file:match("([^/]+)$"):gsub("%.json$", "")))
  if #plan.name > 52 or not plan.name:match("^[a-z0-9][a-z0-9%-]*$") or plan.name:sub(-1) == "-" then
    usage_error(("plan: name %q must be a DNS label of at most 52 characters (Job names add the slice)"):format(plan.name))
  end
  for k, spec in pairs(declared) do
    if spec.secret then plan.secret_params[k] = spec.env or "" end
  end

  local base = append({ "run", o.pipeline, "--params-file", file }, unpack(set_args(o.sets)))
  local builds = declared.artifacts_out and declared.artifacts and params.artifacts == nil
  if builds then
    plan.build = { artifacts = o.artifacts or M.defaults.artifacts }
    plan.build.argv = append({ unpack(base) }, "--set", "artifacts_out=" .. plan.build.artifacts)
    if declared.deploy and declared.deploy.type == "boolean" then append(plan.build.argv, "--set", "deploy=false") end
  end
  local groups = targets and {} or M.slices(ids, o)
  for i, t in ipairs(targets or {}) do groups[i] = t end
  for i, g in ipairs(groups) do
    local s = { id = targets and dns_label(g) or tostring(i), services = targets and {} or g, target = targets and g or nil }
    s.argv = { unpack(base) }
    if targets then append(s.argv, "--set", "target=" .. g)
    else append(s.argv, "--set", "only=" .. table.concat(g, ",")) end
    if builds then append(s.argv, "--set", "artifacts=" .. plan.build.artifacts) end
    plan.slices[i] = s
  end
  local mp = o.max_parallel or #plan.slices
  if math.floor(mp) ~= mp or mp < 1 then
    usage_error(("plan: --max-parallel %s is out of range: at least 1"):format(tostring(mp)))
  end
  plan.max_parallel = math.min(mp, #plan.slices)
  return plan
end

--- One shell command line of an argv (words quoted for sh), "hoist" first.
---@param argv string[]
---@return string
function M.command(argv)
  local words = { "hoist" }
  for i, a in ipairs(argv) do words[i + 1] = util.shell_quote(a) end
  return table.concat(words, " ")
end

--- The GitHub Actions form of a plan: `matrix` for `strategy.matrix` (`{"include": [{slice,
--- services, command}]}`), `max-parallel`, and `build` (the build-once command and the
--- artifacts file the slices deploy from) when the pipeline builds.
---@param plan hoist.Plan
---@return table
function M.github(plan)
  local include = {}
  for i, s in ipairs(plan.slices) do
    include[i] = { slice = s.id, services = table.concat(s.services, ","), target = s.target, command = M.command(s.argv) }
  end
  local out = { matrix = { include = include }, ["max-parallel"] = plan.max_parallel }
  if plan.build then out.build = { command = M.command(plan.build.argv), artifacts = plan.build.artifacts } end
  return out
end

local function labels(plan, slice)
  local l = { ["app.kubernetes.io/name"] = "hoist", ["app.kubernetes.io/managed-by"] = "hoist", ["hoist.dev/plan"] = plan.name }
  if slice then l["hoist.dev/slice"] = slice.id end
  return l
end

-- The variables a pipeline reads its secret parameters from, sorted: the keys the Secret
-- should hold (shown on the Jobs, never their values).
local function secret_keys(plan)
  local keys = {}
  for _, env in pairs(plan.secret_params) do if env ~= "" then keys[#keys + 1] = env end end
  table.sort(keys)
  return table.concat(keys, ",")
end

--- The Kubernetes form of a plan: a ConfigMap holding the params file (and the artifacts the
--- slices deploy from) and one batch/v1 Job per slice running the hoist image with the
--- slice's `hoist run` as args. Credentials come only from Secrets by reference
--- (`envFrom.secretRef`); a params file holding a secret parameter is refused, as it would
--- land in the ConfigMap.
---@param plan hoist.Plan
---@param o {image: string, params: table, secrets?: string[], artifacts_json?: string, namespace?: string, service_account?: string, ttl?: integer}
---@return table[] documents
function M.jobs(plan, o)
  if type(o.image) ~= "string" or o.image == "" then
    usage_error("plan: --format jobs needs --image: the hoist image every Job runs")
  end
  -- the top level and each entry of services (an entry takes the pipeline's parameters too)
  local scopes = { { where = "", params = o.params } }
  for i, e in ipairs(type(o.params.services) == "table" and o.params.services or {}) do
    if type(e) == "table" then scopes[#scopes + 1] = { where = ("services[%d] (%s): "):format(i, tostring(e.name)), params = e } end
  end
  for _, scope in ipairs(scopes) do
    for k, env in pairs(plan.secret_params) do
      if scope.params[k] ~= nil then
        usage_error(("plan: %s holds the secret parameter %s%s: it would be written into a ConfigMap; give it in a Secret (%s)")
          :format(plan.params_file, scope.where, k, env ~= "" and env or "--secret"), { param = k })
      end
    end
  end
  if plan.build and not o.artifacts_json then
    usage_error(("plan: pipeline %s builds: Jobs deploy digests, so build once first (%s) and pass --artifacts %s")
      :format(plan.pipeline, M.command(plan.build.argv), plan.build.artifacts))
  end
  if o.artifacts_json then -- checked here, not first in the cluster: each slice's services must be in it
    local ok, doc = pcall(json.decode, o.artifacts_json)
    if not ok or type(doc) ~= "table" or json.kind(doc) == "array" or (next(doc) ~= nil and #doc > 0) then
      usage_error("plan: --artifacts is not a JSON object {service: image reference by digest} (the build's artifacts_out)")
    end
    local missing = {}
    for _, s in ipairs(plan.slices) do
      for _, name in ipairs(s.services) do if doc[name] == nil then missing[#missing + 1] = name end end
    end
    if #missing > 0 then
      usage_error(("plan: --artifacts records no image for %s: build them first (artifacts_out)"):format(table.concat(missing, ", ")))
    end
  end
  local mount = M.defaults.mount
  local data = { ["params.json"] = json.encode(o.params, { pretty = true }) .. "\n" }
  if o.artifacts_json then data["artifacts.json"] = o.artifacts_json end
  local cm = { apiVersion = "v1", kind = "ConfigMap", data = data,
    metadata = { name = plan.name .. "-params", namespace = o.namespace, labels = labels(plan) } }
  local docs = { cm }
  local secrets = (o.secrets and #o.secrets > 0) and o.secrets or { M.defaults.secret }
  for _, s in ipairs(plan.slices) do
    local args = {}
    for i, a in ipairs(s.argv) do
      if a == plan.params_file and s.argv[i - 1] == "--params-file" then a = mount .. "/params.json"
      elseif plan.build and a == "artifacts=" .. plan.build.artifacts then a = "artifacts=" .. mount .. "/artifacts.json" end
      args[i] = a
    end
    append(args, "--state-dir", "/tmp/hoist", "--no-color")
    local env_from = {}
    for i, name in ipairs(secrets) do env_from[i] = { secretRef = { name = name } } end
    local l = labels(plan, s)
    docs[#docs + 1] = {
      apiVersion = "batch/v1", kind = "Job",
      metadata = { name = plan.name .. "-" .. s.id, namespace = o.namespace, labels = l,
        annotations = { ["hoist.dev/services"] = table.concat(s.services, ","), ["hoist.dev/target"] = s.target,
          ["hoist.dev/secret-keys"] = secret_keys(plan) ~= "" and secret_keys(plan) or nil } },
      spec = {
        backoffLimit = 0, -- a deploy that failed has rolled back: running it again is the operator's call
        ttlSecondsAfterFinished = o.ttl or M.defaults.ttl,
        template = {
          metadata = { labels = l },
          spec = {
            restartPolicy = "Never",
            serviceAccountName = o.service_account,
            containers = { {
              name = "hoist", image = o.image, args = args, envFrom = env_from,
              volumeMounts = { { name = "plan", mountPath = mount, readOnly = true } },
            } },
            volumes = { { name = "plan", configMap = { name = cm.metadata.name } } },
          },
        },
      },
    }
  end
  return docs
end

--- Entry of `hoist plan --matrix` (the CLI passes its flags): prints the plan in the chosen
--- format, writes it under `out` when given, and under GitHub Actions (or Azure Pipelines)
--- sets the step outputs `matrix`, `max-parallel`, `build-command` and `artifacts`, and adds
--- the slices to the step summary.
--- Internal: the CLI's entry.
---@param a table
function M.main(a)
  local fmt = a.format ~= "" and a.format or M.defaults.format
  if fmt ~= "github" and fmt ~= "jobs" then usage_error(("plan: --format must be github or jobs, got %q"):format(fmt)) end
  local function opt(v) return (v ~= nil and v ~= 0 and v ~= "") and v or nil end
  local params = json.decode(json.encode(a.params or {}))
  local plan = M.matrix { pipeline = a.pipeline, params_file = a.params_file, params = a.params or {}, sets = a.sets,
    max_parallel = opt(a.max_parallel), slice_size = opt(a.slice_size), slices = opt(a.slices), name = opt(a.name),
    artifacts = opt(a.artifacts_name) }
  local text, file
  if fmt == "github" then
    local g = M.github(plan)
    text, file = json.encode(g) .. "\n", "matrix.json"
    local ci = require "hoist.ci"
    ci.set_output("matrix", json.encode(g.matrix))
    ci.set_output("max-parallel", tostring(g["max-parallel"]))
    if g.build then
      ci.set_output("build-command", g.build.command)
      ci.set_output("artifacts", g.build.artifacts)
    end
    local rows = { ("### hoist plan: %d slices of %s, at most %d at once%s\n\n| slice | services |\n|---|---|")
      :format(#plan.slices, plan.pipeline, plan.max_parallel, g.build and ", after one build (" .. g.build.artifacts .. ")" or "") }
    for _, row in ipairs(g.matrix.include) do rows[#rows + 1] = ("| %s | %s |"):format(row.slice, row.services ~= "" and row.services or row.target) end
    ci.summary(table.concat(rows, "\n"))
  else
    local artifacts_json
    if opt(a.artifacts) then artifacts_json = require("hoist.fs").read_file(a.artifacts) end
    local docs = M.jobs(plan, { image = a.image, params = params, secrets = a.secrets, artifacts_json = artifacts_json,
      namespace = opt(a.namespace), service_account = opt(a.service_account), ttl = opt(a.ttl) })
    text, file = require("hoist.yaml").encode_all(docs), plan.name .. ".yaml"
  end
  if opt(a.out) then
    local fs = require "hoist.fs"
    fs.mkdir(a.out)
    fs.write_file(a.out .. "/" .. file, text)
    require("hoist.log").info(("plan: wrote %s/%s (%d slices)"):format(a.out, file, #plan.slices))
  end
  io.stdout:write(text)
end

return M
