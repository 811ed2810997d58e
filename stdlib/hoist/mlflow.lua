--- hoist.mlflow: a client of MLflow's model registry and runs (REST API 2.0, MLflow 2.x and
--- 3.x) over hoist.http. Resolves `models:/` URIs to one model version, refuses a version that
--- cannot be deployed (registration not READY, source run failed), reads versions, runs and
--- tags for the image tag and labels, and writes back what was deployed as model-version
--- tags. Credentials are registered as secrets. Reference: docs/mlflow.md.
local http = require "hoist.http"
local native_http = require "hoist.native.http"
local core = require "hoist.native.core"
local json = require "hoist.json"
local util = require "hoist.util"

local M = {}

local fail = util.fail

-- MLflow's stages, in its spelling; a stage is matched without regard to case, as
-- MLflow's get_canonical_stage does.
local STAGES = { "None", "Staging", "Production", "Archived" }

-- Run statuses that make a version undeployable: the model came out of a run that did
-- not end well. RUNNING and SCHEDULED are allowed: a model is often logged mid-run.
local BAD_RUN = { FAILED = "RUN_FAILED", KILLED = "RUN_KILLED" }

-- The tags mark_deployed writes, so the registry shows what serves.
M.DEPLOYED_TAGS = { digest = "hoist.deployed.digest", target = "hoist.deployed.target",
                    at = "hoist.deployed.at", run = "hoist.deployed.run" }

-- A version's own image tag, when the model's owners choose one.
M.IMAGE_TAG_TAG = "hoist.image.tag"

local function invalid(message) fail("invalid_argument", "mlflow: " .. message) end

local function env(name)
  local v = os.getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

-- JSON null (never sent by MLflow, but a proxy might) reads as absent.
local function val(x)
  if x == json.null then return nil end
  return x
end

local function tag_map(list)
  local out = {}
  for _, t in ipairs(type(list) == "table" and list or {}) do
    if type(t) == "table" and type(t.key) == "string" then out[t.key] = val(t.value) or "" end
  end
  return out
end

---------------------------------------------------------------- URIs

local function canonical_stage(stage)
  for _, s in ipairs(STAGES) do
    if s:lower() == stage:lower() then return s end
  end
  invalid(("invalid stage %q: must be one of %s"):format(stage, table.concat(STAGES, ", ")))
end

local FORMS = "models:/<name>/<version>, models:/<name>/<stage>, models:/<name>/latest or models:/<name>@<alias>"

---@class hoist.mlflow.Ref
---@field name string the registered model's name
---@field version? string a version number
---@field alias? string an alias (champion)
---@field stage? string a stage, in MLflow's spelling (Production)
---@field latest? boolean the highest version

--- Parses a `models:/` URI by MLflow's rules: `models:/<name>/<version|stage|latest>` or
--- `models:/<name>@<alias>`. Raises invalid_argument for any other form (a registry host, a
--- logged-model id, a bare name), saying which forms are expected.
---@param uri string
---@return hoist.mlflow.Ref
function M.parse_uri(uri)
  if type(uri) ~= "string" then invalid("expected a models:/ URI string, got " .. type(uri)) end
  local rest = uri:match("^models:(.*)$")
  if not rest then invalid(("%q is not a models:/ URI; expected %s"):format(uri, FORMS)) end
  if rest:match("^//") then
    invalid(("%q names a registry host (models://<profile>@...): give the server as tracking_uri or " ..
      "MLFLOW_TRACKING_URI and the model as %s"):format(uri, FORMS))
  end
  local path = rest:match("^/(.+)$")
  if not path then invalid(("%q names no model; expected %s"):format(uri, FORMS)) end
  local parts = {}
  for p in (path .. "/"):gmatch("([^/]*)/") do parts[#parts + 1] = p end
  if #parts > 2 or parts[1]:match("^%s*$") or (parts[2] and parts[2]:match("^%s*$")) then
    invalid(("%q is not a model URI; expected %s"):format(uri, FORMS))
  end
  if #parts == 2 then
    local name, suffix = parts[1], parts[2]
    if name:find("@", 1, true) then invalid(("%q: a model name cannot hold '@'; expected %s"):format(uri, FORMS)) end
    if suffix:match("^%d+$") then return { name = name, version = tostring(tonumber(suffix)) } end
    if suffix:lower() == "latest" then return { name = name, latest = true } end
    return { name = name, stage = canonical_stage(suffix) }
  end
  local name, alias = path:match("^(.*)@([^@]*)$")
  if name then
    if name == "" or alias == "" then invalid(("%q: empty model name or alias; expected %s"):format(uri, FORMS)) end
    return { name = name, alias = alias }
  end
  if path:match("^m%-") then
    invalid(("%q is a logged model id (MLflow 3); hoist.mlflow deploys registered model versions: %s"):format(uri, FORMS))
  end
  invalid(("%q names no version: add /<version>, /<stage>, /latest or @<alias> (%s)"):format(uri, FORMS))
end

local ref_spec = {
  name = { type = "string", required = true, pattern = "[^/@]+", hint = "a model name without '/' or '@'" },
  version = { type = "string|number" }, alias = { type = "string", pattern = "[^/@]+", hint = "an alias without '/' or '@'" },
  stage = "string", latest = "boolean",
}

-- Checks a {name, version|alias|stage|latest} table; returns it normalized.
local function check_ref(fname, ref, extra)
  local o = util.check_opts(fname, ref, util.spec(ref_spec, extra))
  local n = (o.version ~= nil and 1 or 0) + (o.alias and 1 or 0) + (o.stage and 1 or 0) + (o.latest and 1 or 0)
  if n ~= 1 then invalid(("%s: give exactly one of version, alias, stage or latest = true for model %q"):format(fname, o.name)) end
  if o.version ~= nil then
    local v = tostring(o.version)
    if not v:match("^%d+$") then invalid(("%s: version must be a whole number, got %q"):format(fname, v)) end
    o.version = tostring(tonumber(v))
  end
  if o.stage then o.stage = canonical_stage(o.stage) end
  return o
end

--- The `models:/` URI of a model version, alias, stage or the latest version: the inverse of
--- parse_uri, for a webhook's `{name, version}` or `{name, alias}`.
---@param ref hoist.mlflow.Ref
---@return string
function M.uri(ref)
  local o = check_ref("hoist.mlflow.uri", ref)
  if o.alias then return "models:/" .. o.name .. "@" .. o.alias end
  return "models:/" .. o.name .. "/" .. (o.version or o.stage or "latest")
end

---------------------------------------------------------------- the client

---@class hoist.mlflow.ClientOptions
---@field tracking_uri? string http(s) URL of the tracking server (default $MLFLOW_TRACKING_URI)
---@field token? string Bearer token (default $MLFLOW_TRACKING_TOKEN)
---@field username? string Basic auth user (default $MLFLOW_TRACKING_USERNAME)
---@field password? string Basic auth password (default $MLFLOW_TRACKING_PASSWORD)
---@field insecure? boolean skip TLS verification (default $MLFLOW_TRACKING_INSECURE_TLS == "true")
---@field cacert? string CA bundle (default $MLFLOW_TRACKING_SERVER_CERT_PATH)
---@field timeout? number seconds per request (default 30)

---@class hoist.mlflow.Client
---@field tracking_uri string
local Client = {}
Client.__index = Client
Client.__tostring = function(c) return "hoist.mlflow.Client(" .. http.redact_url(c.tracking_uri) .. ")" end

local client_spec = {
  tracking_uri = "string", token = { type = "string", secret = true }, username = "string",
  password = { type = "string", secret = true }, insecure = "boolean", cacert = "string",
  timeout = { type = "number", min = 0, default = 30 },
}

--- A client of the MLflow tracking server at `tracking_uri` (default $MLFLOW_TRACKING_URI),
--- with Basic credentials (username and password) or else a Bearer token, each defaulting to
--- the variable MLflow's own client reads; they are registered as secrets.
---@param opts? hoist.mlflow.ClientOptions
---@return hoist.mlflow.Client
function M.client(opts)
  local o = util.check_opts("hoist.mlflow.client", opts or {}, client_spec)
  local uri = o.tracking_uri or env("MLFLOW_TRACKING_URI")
  if not uri then invalid("no tracking server: set MLFLOW_TRACKING_URI or the option tracking_uri") end
  if not uri:match("^[Hh][Tt][Tt][Pp][Ss]?://[^/]") then
    invalid(("the tracking URI %q is not an http:// or https:// URL (from %s): hoist.mlflow speaks to a tracking " ..
      "server's REST API"):format(http.redact_url(uri), o.tracking_uri and "option tracking_uri" or "MLFLOW_TRACKING_URI"))
  end
  local c = setmetatable({ tracking_uri = uri, timeout = o.timeout }, Client)
  c.base = uri:gsub("/+$", "")
  c.host = uri:match("^%a+://([^/?#]+)"):gsub("^.*@", "")
  c.insecure = o.insecure
  if c.insecure == nil then c.insecure = (env("MLFLOW_TRACKING_INSECURE_TLS") or ""):lower() == "true" end
  c.cacert = o.cacert or env("MLFLOW_TRACKING_SERVER_CERT_PATH")
  local user = o.username or env("MLFLOW_TRACKING_USERNAME")
  local password = o.password or env("MLFLOW_TRACKING_PASSWORD")
  local token = o.token or env("MLFLOW_TRACKING_TOKEN")
  if (user == nil) ~= (password == nil) then
    invalid(("Basic auth needs both a username and a password; only the %s is set (option or MLFLOW_TRACKING_%s)"):format(
      user and "username" or "password", user and "USERNAME" or "PASSWORD"))
  end
  c.headers = { Accept = "application/json" }
  -- MLflow's client order: Basic credentials win over a token
  if user then
    core.secret(password)
    c.headers.Authorization = "Basic " .. core.base64_encode(user .. ":" .. password)
    c.auth = ("the Basic credentials of user %q"):format(user)
  elseif token then
    core.secret(token)
    c.headers.Authorization = "Bearer " .. token
    c.auth = "the Bearer token"
  end
  return c
end

-- The remote's words in an error answer: MLflow's envelope, else the body's first line.
local function remote_words(resp, doc)
  if type(doc) == "table" and type(val(doc.message)) == "string" then return doc.message, val(doc.error_code) end
  local text = (resp.body or ""):gsub("%s+", " "):gsub("^ ", "")
  if text == "" then text = "(empty body)" end
  if #text > 200 then text = text:sub(1, 200) .. "..." end
  return text, nil
end

local function decode(resp)
  if resp.json ~= nil then return resp.json end
  if resp.body == nil or resp.body == "" then return nil end
  local ok, doc = pcall(json.decode, resp.body)  -- decoding never waits: no cancellation to lose
  if ok then return doc end
  return nil
end

-- The error for a failed status: the code from the status (hoist.http's one mapping), except
-- that MLflow answers an unknown alias with 400 INVALID_PARAMETER_VALUE "Registered model alias
-- X not found.": for a caller that is a missing thing, like a missing version.
function Client:_status_error(what, resp, url)
  local doc = decode(resp)
  local words, error_code = remote_words(resp, doc)
  local code = native_http.code_for_status(resp.status)
  if resp.status == 400 and words:match("^Registered model alias .* not found") then code = "not_found" end
  local hint = ""
  if resp.status == 401 then
    hint = self.auth and ("; the server refused " .. self.auth)
      or "; no credentials were sent: set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
  elseif resp.status == 403 then
    hint = "; " .. (self.auth or "an anonymous caller") .. " lacks the permission"
  elseif resp.status == 404 and not error_code then
    hint = ("; is %s an MLflow tracking server?"):format(http.redact_url(self.tracking_uri))
  end
  fail(code, ("mlflow: %s: %s (HTTP %d from %s)%s"):format(what, words, resp.status, self.host, hint),
    { status = resp.status, error_code = error_code, remote_message = words, url = http.redact_url(url) })
end

-- One call of the REST API: GET with `args` as the query, or POST with them as JSON (`safe`:
-- a POST that only reads, sent in a dry run too). Returns the decoded object ({} when a dry
-- run planned the request).
function Client:_call(what, method, endpoint, args, safe)
  local url = self.base .. "/api/2.0/mlflow/" .. endpoint
  local req = { url = url, method = method, headers = self.headers, timeout = self.timeout,
                insecure = self.insecure or nil, cacert = self.cacert }
  if method == "GET" then req.query = args else req.json = args; req.safe = safe end
  local ok, resp = util.try(http.request, req)
  if not ok then
    local e = resp
    if hoist.is_error(e) then fail(e.code, ("mlflow: %s: %s"):format(what, e.message), e.details, e.retryable) end
    error(e, 0)
  end
  if resp.planned then return {} end
  if resp.status >= 400 then self:_status_error(what, resp, url) end
  local doc = decode(resp)
  if type(doc) ~= "table" or doc[1] ~= nil then
    fail("unavailable", ("mlflow: %s: the answer from %s is not MLflow's JSON (HTTP %d, %s): is %s an MLflow tracking server?"):format(
      what, self.host, resp.status, resp.headers["content-type"] or "no Content-Type", http.redact_url(self.tracking_uri)),
      { status = resp.status, url = http.redact_url(url), body = (resp.body or ""):sub(1, 200) }, false)
  end
  return doc
end

-- The object under `field` of an answer; an answer without it is not MLflow's.
function Client:_field(doc, field, what)
  local v = doc[field]
  if type(v) ~= "table" then
    fail("unavailable", ("mlflow: %s: the answer from %s has no %q object: is %s an MLflow tracking server?"):format(
      what, self.host, field, http.redact_url(self.tracking_uri)), { field = field }, false)
  end
  return v
end

---------------------------------------------------------------- entities

---@class hoist.mlflow.ModelVersion
---@field name string
---@field version string
---@field status string READY, PENDING_REGISTRATION or FAILED_REGISTRATION
---@field status_message? string
---@field current_stage? string None, Staging, Production, Archived
---@field source? string where the model's artifacts are
---@field run_id? string the source run ("" or nil when none)
---@field run_link? string
---@field model_id? string MLflow 3: the logged model it was made from
---@field description? string
---@field user_id? string
---@field creation_timestamp? integer milliseconds
---@field last_updated_timestamp? integer milliseconds
---@field tags table<string, string>
---@field aliases string[]

local VERSION_FIELDS = { "name", "version", "status", "status_message", "current_stage", "source", "run_id", "run_link",
                         "model_id", "description", "user_id", "creation_timestamp", "last_updated_timestamp" }

local function model_version(v)
  local out = {}
  for _, k in ipairs(VERSION_FIELDS) do out[k] = val(v[k]) end
  if out.version ~= nil then out.version = tostring(out.version) end
  out.tags = tag_map(v.tags)
  out.aliases = {}
  for _, a in ipairs(type(v.aliases) == "table" and v.aliases or {}) do out.aliases[#out.aliases + 1] = a end
  return out
end

local function version_list(doc)
  local out = {}
  for _, v in ipairs(type(doc.model_versions) == "table" and doc.model_versions or {}) do out[#out + 1] = model_version(v) end
  return out
end

---@class hoist.mlflow.RegisteredModel
---@field name string
---@field description? string
---@field creation_timestamp? integer
---@field last_updated_timestamp? integer
---@field tags table<string, string>
---@field aliases table<string, string> alias -> version
---@field latest_versions hoist.mlflow.ModelVersion[]

---@class hoist.mlflow.Run
---@field run_id string
---@field run_name? string
---@field experiment_id? string
---@field status string RUNNING, SCHEDULED, FINISHED, FAILED or KILLED
---@field user_id? string
---@field start_time? integer
---@field end_time? integer
---@field artifact_uri? string
---@field lifecycle_stage? string
---@field tags table<string, string>
---@field params table<string, string>
---@field metrics table<string, number>

---------------------------------------------------------------- reads

local name_spec = { name = { type = "string", required = true } }

--- A registered model: description, tags, aliases (alias -> version) and latest versions.
---@param opts {name: string}|string
---@return hoist.mlflow.RegisteredModel
function Client:get_registered_model(opts)
  local o = util.check_opts("hoist.mlflow.Client:get_registered_model", opts, name_spec, "name")
  local what = "get registered model " .. o.name
  local rm = self:_field(self:_call(what, "GET", "registered-models/get", { name = o.name }), "registered_model", what)
  local out = { name = val(rm.name), description = val(rm.description), creation_timestamp = val(rm.creation_timestamp),
                last_updated_timestamp = val(rm.last_updated_timestamp), tags = tag_map(rm.tags), aliases = {}, latest_versions = {} }
  for _, a in ipairs(type(rm.aliases) == "table" and rm.aliases or {}) do out.aliases[a.alias] = tostring(a.version) end
  for _, v in ipairs(type(rm.latest_versions) == "table" and rm.latest_versions or {}) do
    out.latest_versions[#out.latest_versions + 1] = model_version(v)
  end
  return out
end

-- The model version that `key` of the ref ("version" or "alias") names, as `endpoint` answers
-- it; `sep` joins name and key in the messages ("m/3", "m@champion").
local function one_version(self, fname, opts, key, sep, endpoint)
  local o = check_ref(fname, opts)
  if not o[key] then invalid(("%s: option '%s' is required"):format(fname, key)) end
  local what = ("get model version %s%s%s"):format(o.name, sep, o[key])
  return model_version(self:_field(self:_call(what, "GET", endpoint, { name = o.name, [key] = o[key] }), "model_version", what))
end

--- One model version.
---@param opts {name: string, version: string|integer}
---@return hoist.mlflow.ModelVersion
function Client:get_model_version(opts)
  return one_version(self, "hoist.mlflow.Client:get_model_version", opts, "version", "/", "model-versions/get")
end

--- The model version an alias points to.
---@param opts {name: string, alias: string}
---@return hoist.mlflow.ModelVersion
function Client:get_model_version_by_alias(opts)
  return one_version(self, "hoist.mlflow.Client:get_model_version_by_alias", opts, "alias", "@", "registered-models/alias")
end

--- The latest version in each of `stages` (all stages when nil), as MLflow's
--- get-latest-versions answers: whatever their status.
---@param opts {name: string, stages?: string[]}
---@return hoist.mlflow.ModelVersion[]
function Client:get_latest_versions(opts)
  local o = util.check_opts("hoist.mlflow.Client:get_latest_versions", opts,
    { name = { type = "string", required = true }, stages = "table" })
  local body = { name = o.name }
  if o.stages and #o.stages > 0 then
    body.stages = {}
    for i, s in ipairs(o.stages) do body.stages[i] = canonical_stage(tostring(s)) end
  end
  local what = ("get latest versions of %s%s"):format(o.name, body.stages and (" in " .. table.concat(body.stages, ", ")) or "")
  return version_list(self:_call(what, "POST", "registered-models/get-latest-versions", body, true))
end

--- Model versions matching an MLflow filter (`name='churn'`), every page followed.
---@param opts {filter?: string, order_by?: string[], max_results?: integer}
---@return hoist.mlflow.ModelVersion[]
function Client:search_model_versions(opts)
  local o = util.check_opts("hoist.mlflow.Client:search_model_versions", opts or {},
    { filter = "string", order_by = "table", max_results = { type = "integer", min = 1 } })
  local out, seen, token = {}, {}, nil
  local what = "search model versions" .. (o.filter and (" " .. o.filter) or "")
  repeat
    local q = { filter = o.filter, order_by = o.order_by, page_token = token }
    if o.max_results then q.max_results = o.max_results - #out end
    local doc = self:_call(what, "GET", "model-versions/search", q)
    for _, v in ipairs(version_list(doc)) do out[#out + 1] = v end
    token = val(doc.next_page_token)
    if token == "" then token = nil end
    if token then
      if seen[token] then fail("unavailable", ("mlflow: %s: the server sent the page token %q twice"):format(what, token)) end
      seen[token] = true
    end
  until not token or (o.max_results and #out >= o.max_results)
  return out
end

--- A run: its status, times, artifact URI, tags, params and latest metrics.
---@param opts {run_id: string}|string
---@return hoist.mlflow.Run
function Client:get_run(opts)
  local o = util.check_opts("hoist.mlflow.Client:get_run", opts, { run_id = { type = "string", required = true } }, "run_id")
  local what = "get run " .. o.run_id
  local r = self:_field(self:_call(what, "GET", "runs/get", { run_id = o.run_id }), "run", what)
  local info = type(r.info) == "table" and r.info or {}
  local data = type(r.data) == "table" and r.data or {}
  local out = { run_id = val(info.run_id) or val(info.run_uuid), tags = tag_map(data.tags), params = tag_map(data.params), metrics = {} }
  for _, k in ipairs { "run_name", "experiment_id", "status", "user_id", "start_time", "end_time", "artifact_uri", "lifecycle_stage" } do
    out[k] = val(info[k])
  end
  for _, m in ipairs(type(data.metrics) == "table" and data.metrics or {}) do
    if type(m) == "table" and m.key then out.metrics[m.key] = val(m.value) end
  end
  return out
end

---------------------------------------------------------------- resolve

---@class hoist.mlflow.Resolved: hoist.mlflow.ModelVersion
---@field uri string the models:/ URI resolved
---@field ref "alias"|"stage"|"version"|"latest"
---@field run? hoist.mlflow.Run the source run (nil: none, not checked, or gone)
---@field image_tag string the version, or the version's tag hoist.image.tag
---@field labels table<string, string> image labels naming the model, version, run and source

local wait_spec = { type = "number", min = 0 }
local resolve_spec = { model = "string", check_run = { type = "boolean", default = true }, wait = wait_spec }

-- Seconds between two reads of a version still being registered.
M.WAIT_INTERVAL = 1

local function pick_highest(list)
  local best
  for _, v in ipairs(list) do
    if not best or (tonumber(v.version) or 0) > (tonumber(best.version) or 0) then best = v end
  end
  return best
end

-- Docker's tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
local function image_tag_of(v)
  local t = v.tags[M.IMAGE_TAG_TAG]
  if t == nil then return v.version end
  if #t > 128 or not t:match("^[%w_][%w_%.%-]*$") then
    invalid(("version %s of %s has the tag %s = %q, which is not an image tag ([A-Za-z0-9_][A-Za-z0-9_.-]*, at most 128)"):format(
      v.version, v.name, M.IMAGE_TAG_TAG, t))
  end
  return t
end

local function labels_of(v)
  local source = v.source
  if source and source:match("^[Hh][Tt][Tt][Pp]") then source = http.redact_url(source) end
  return { ["dev.hoist.mlflow.model"] = v.name, ["dev.hoist.mlflow.version"] = v.version,
           ["dev.hoist.mlflow.run-id"] = (v.run_id ~= "" and v.run_id) or nil, ["dev.hoist.mlflow.source"] = source,
           ["org.opencontainers.image.version"] = v.version }
end

-- Refuses a version whose registration is not READY.
local function check_status(uri, v, waited)
  if v.status == "READY" then return end
  local pending = v.status == "PENDING_REGISTRATION"
  local why = pending and ("is still being registered (PENDING_REGISTRATION), not READY%s"):format(
      waited and (" after waiting %gs"):format(waited) or "")
    or ("failed to register (%s)"):format(tostring(v.status))
  fail("conflict", ("mlflow: %s is version %s of %s, which %s%s"):format(uri, v.version, v.name, why,
    v.status_message and (": " .. v.status_message) or ""),
    { reason = v.status, status_message = v.status_message, name = v.name, version = v.version }, pending)
end

--- Resolves a `models:/` URI (or `{name, version|alias|stage|latest}`) to one model version
--- that can be deployed: its registration READY and (unless check_run = false) its source run
--- not FAILED or KILLED. With `wait` (seconds), a version still PENDING_REGISTRATION is read
--- again every WAIT_INTERVAL seconds until it is READY, fails, or the time is up (a version
--- just created, as MLflow's model_version.created webhook announces it). Raises not_found,
--- conflict (with details.reason) or the call's error.
---@param ref string|{model?: string, name?: string, version?: string|integer, alias?: string, stage?: string, latest?: boolean, check_run?: boolean, wait?: number}
---@return hoist.mlflow.Resolved
function Client:resolve(ref)
  local p, check_run, wait
  if type(ref) == "table" and ref.model == nil then
    p = check_ref("hoist.mlflow.Client:resolve", ref, { check_run = "boolean", wait = wait_spec })
    check_run, wait = p.check_run ~= false, p.wait
  else
    local o = util.check_opts("hoist.mlflow.Client:resolve", ref, resolve_spec, "model")
    if not o.model then invalid("hoist.mlflow.Client:resolve: give model = a models:/ URI, or name with a version, alias or stage") end
    p, check_run, wait = M.parse_uri(o.model), o.check_run, o.wait
  end
  local uri = M.uri { name = p.name, version = p.version, alias = p.alias, stage = p.stage, latest = p.latest }
  local v, kind
  if p.alias then
    v, kind = self:get_model_version_by_alias { name = p.name, alias = p.alias }, "alias"
  elseif p.version then
    v, kind = self:get_model_version { name = p.name, version = p.version }, "version"
  else
    kind = p.stage and "stage" or "latest"
    v = pick_highest(self:get_latest_versions { name = p.name, stages = p.stage and { p.stage } or nil })
    if not v then
      fail("not_found", p.stage and ("mlflow: %s: no version of model %s is in stage %s"):format(uri, p.name, p.stage)
        or ("mlflow: %s: model %s has no versions"):format(uri, p.name), { name = p.name, stage = p.stage })
    end
  end
  local waited
  if v.status == "PENDING_REGISTRATION" and wait and wait > 0 then
    -- the same version read again: an alias or stage may move meanwhile, the version asked for may not
    local started = hoist.now()
    hoist.log.info(("mlflow: %s: version %s of %s is still being registered; waiting up to %gs"):format(uri, v.version, v.name, wait))
    while v.status == "PENDING_REGISTRATION" and hoist.now() - started < wait do
      hoist.sleep(math.min(M.WAIT_INTERVAL, math.max(0, wait - (hoist.now() - started))))
      v = self:get_model_version { name = v.name, version = v.version }
    end
    waited = wait
  end
  check_status(uri, v, waited)
  local run
  if check_run and v.run_id and v.run_id ~= "" then
    local ok, r = util.try(self.get_run, self, { run_id = v.run_id })
    if ok then
      run = r
    elseif not hoist.is_error(r, "not_found") then
      error(r, 0)
    else
      hoist.log.warn(("mlflow: %s: source run %s of version %s is gone from the tracking server; not checked"):format(uri, v.run_id, v.version))
    end
    if run and BAD_RUN[run.status] then
      fail("conflict", ("mlflow: %s is version %s of %s, whose source run %s%s ended %s"):format(uri, v.version, v.name, v.run_id,
        run.run_name and (" (" .. run.run_name .. ")") or "", run.status),
        { reason = BAD_RUN[run.status], run_id = v.run_id, run_status = run.status, name = v.name, version = v.version })
    end
  end
  local out = v
  out.uri, out.ref, out.run = uri, kind, run
  out.image_tag = image_tag_of(v)
  out.labels = labels_of(v)
  hoist.log.info(("mlflow: %s is version %s of %s (%s%s)"):format(uri, v.version, v.name, v.status,
    run and (", run " .. v.run_id .. " " .. tostring(run.status)) or ""), { model = v.name, version = v.version, run_id = v.run_id })
  return out
end

--- `hoist.mlflow.client(opts):resolve(ref)`: resolves a models:/ URI with a client made from
--- `opts` (default: the MLFLOW_TRACKING_* variables).
---@param ref string|table see Client:resolve
---@param opts? hoist.mlflow.ClientOptions
---@return hoist.mlflow.Resolved
function M.resolve(ref, opts) return M.client(opts):resolve(ref) end

---------------------------------------------------------------- writes

local tag_spec = { name = { type = "string", required = true }, version = { type = "string|number", required = true },
                   key = { type = "string", required = true }, value = { type = "string", required = true } }

--- Sets one tag of a model version (replacing its value). In a dry run it is a plan step.
---@param opts {name: string, version: string|integer, key: string, value: string}
function Client:set_model_version_tag(opts)
  local o = util.check_opts("hoist.mlflow.Client:set_model_version_tag", opts, tag_spec)
  local version = tostring(o.version)
  if not version:match("^%d+$") then invalid(("set_model_version_tag: version must be a whole number, got %q"):format(version)) end
  self:_call(("set tag %s of model version %s/%s"):format(o.key, o.name, version), "POST", "model-versions/set-tag",
    { name = o.name, version = version, key = o.key, value = o.value })
end

local deployed_spec = { name = { type = "string", required = true }, version = { type = "string|number", required = true },
                        digest = { type = "string", required = true }, target = { type = "string", required = true },
                        at = "string", run = "string" }

--- Writes what was deployed as tags of the model version: hoist.deployed.digest, .target,
--- .at (RFC 3339 UTC, now unless given) and .run (when given). Returns them as a map.
---@param opts {name: string, version: string|integer, digest: string, target: string, at?: string, run?: string}
---@return table<string, string>
function Client:mark_deployed(opts)
  local o = util.check_opts("hoist.mlflow.Client:mark_deployed", opts, deployed_spec)
  local tags = { [M.DEPLOYED_TAGS.digest] = o.digest, [M.DEPLOYED_TAGS.target] = o.target,
                 [M.DEPLOYED_TAGS.at] = o.at or os.date("!%Y-%m-%dT%H:%M:%SZ"), [M.DEPLOYED_TAGS.run] = o.run }
  for _, field in ipairs { "digest", "target", "at", "run" } do
    local key = M.DEPLOYED_TAGS[field]
    if tags[key] then self:set_model_version_tag { name = o.name, version = o.version, key = key, value = tags[key] } end
  end
  return tags
end

return M
