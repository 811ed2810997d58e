--- hoist.serve: the webhook receiver behind `hoist serve` (docs/serve.md).
---
--- A request goes through, in this order: the route's path (404), POST (405), a JSON body
--- (415), the signature of one of the path's routes under its secret, compared in constant
--- time (401), the body parsed (400), the signed time within `stale_after` (401), the
--- delivery id not seen before (409), the route's event filter (200 "ignored" when none
--- matches), the route's function mapping the event to {service, pipeline, params} (400 when
--- it fails on the event), then the durable queue: 202 once the delivery is on disk.
--- Runs happen afterwards, one at a time per service (hoist.serve.queue).
local native = require "hoist.native.serve"
local jnative = require "hoist.native.journal"
local sources = require "hoist.serve.sources"
local queue = require "hoist.serve.queue"
local util = require "hoist.util"

local fail = util.fail

local M = {}

--- Policy: MLflow and the generic source sign the time; five minutes is the window MLflow's
--- own docs and most senders use. Delivery ids are kept a week against replays (GitHub signs
--- no time, so only the id stops a replay of its deliveries). A run gets an hour.
M.defaults = { listen = "127.0.0.1:8787", stale_after = 300, dedup_days = 7, run_timeout = 3600,
               lock_timeout = 3600, max_body = 1024 * 1024, github_api = "https://api.github.com" }

---------------------------------------------------------------- the config

---@class hoist.serve.Route
---@field name? string for the log (default "<source>#<n>")
---@field source string mlflow | databricks | github | generic
---@field path? string default "/hooks/<source>"
---@field secret_env? string the environment variable holding the shared secret
---@field secret_file? string or a file holding it
---@field events? string[] event names ("model_version_alias.created"; GitHub: "push" or "release.published"); nil: all
---@field when? fun(event: hoist.serve.Event): boolean a further filter
---@field run? fun(event: hoist.serve.Event): table|nil {service=, pipeline=, params=, forward=}; nil: ignored
---@field service? string default for run's result
---@field pipeline? string default for run's result: a bundled pipeline (container@1) or a file (relative to the config)
---@field params? table default parameters
---@field forward? boolean|table forward to GitHub repository_dispatch instead of running: {repository=, event_type=}

---@class hoist.serve.Event
---@field source string
---@field route string
---@field name string the event ("model_version_alias.created", "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION", "push")
---@field action? string GitHub and generic: the body's action
---@field delivery string
---@field timestamp? number unix seconds the sender signed
---@field payload table the parsed body
---@field headers table<string, string> the request's headers, without the signature

---@class hoist.serve.Config
---@field routes hoist.serve.Route[]
---@field listen? string HOST:PORT
---@field max_body? integer bytes
---@field stale_after? number seconds
---@field dedup_days? number
---@field run_timeout? number seconds
---@field lock_timeout? number seconds
---@field github? {api?: string, token_env?: string, token_file?: string}

local route_spec = {
  name = "string", source = "string", path = "string", secret_env = "string", secret_file = "string",
  events = "table", when = "function", run = "function", service = "string", pipeline = "string",
  params = "table", forward = "boolean|table",
}
local config_spec = {
  routes = "table", listen = "string", max_body = "number", stale_after = "number", dedup_days = "number",
  run_timeout = "number", lock_timeout = "number", github = "table",
}

local function read_secret(where, env, file)
  if (env == nil) == (file == nil) then
    fail("invalid_argument", ("%s: give the secret as secret_env = 'VARIABLE' or secret_file = 'PATH' (one of them)"):format(where))
  end
  local value
  if env then
    value = os.getenv(env)
    if value == nil or value == "" then fail("invalid_argument", ("%s: the environment variable %s is not set"):format(where, env)) end
  else
    value = hoist.fs.read_file(file, { missing_ok = true })
    if value == nil then fail("invalid_argument", ("%s: cannot read the secret file %s"):format(where, file)) end
    value = value:gsub("[\r\n]+$", "")
    if value == "" then fail("invalid_argument", ("%s: the secret file %s is empty"):format(where, file)) end
  end
  if #value < 8 then
    fail("invalid_argument", ("%s: the secret in %s is %d bytes long; a webhook secret needs 8 at least (a long random one)")
      :format(where, env or file, #value))
  end
  return hoist.secret(value)
end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

--- Loads a serve config file: a Lua chunk returning {routes = {...}, ...}; checks every
--- route and reads (and registers as secrets) the secrets it names.
---@param path string
---@return hoist.serve.Config
function M.load_config(path)
  local chunk, err = loadfile(path)
  if not chunk then fail("invalid_argument", ("cannot load the serve config %s: %s"):format(path, tostring(err))) end
  local ok, cfg = pcall(chunk)
  if not ok then fail("invalid_argument", ("the serve config %s failed: %s"):format(path, hoist.is_error(cfg) and cfg.message or tostring(cfg))) end
  if type(cfg) ~= "table" then fail("invalid_argument", ("the serve config %s must return a table {routes = {...}}"):format(path)) end
  cfg = util.check_opts("serve config " .. path, cfg, config_spec)
  if type(cfg.routes) ~= "table" or #cfg.routes == 0 then
    fail("invalid_argument", ("the serve config %s has no routes (routes = {{source = 'mlflow', ...}})"):format(path))
  end
  for k, v in pairs(M.defaults) do if cfg[k] == nil and k ~= "github_api" then cfg[k] = v end end
  cfg.dir = dirname(path)
  local path_source = {}
  for i, r in ipairs(cfg.routes) do
    local where = ("route %d"):format(i)
    r = util.check_opts("serve config " .. path .. ", " .. where, r, route_spec)
    cfg.routes[i] = r
    if not sources[r.source] or type(sources[r.source]) ~= "table" or not sources[r.source].verify then
      fail("invalid_argument", ("%s: source must be one of %s, got %s"):format(where, table.concat(sources.names, ", "), tostring(r.source)))
    end
    r.name = r.name or ("%s#%d"):format(r.source, i)
    where = ("route %s"):format(r.name)
    r.path = r.path or ("/hooks/" .. r.source)
    if not r.path:match("^/[%w%-%._~/]*$") then fail("invalid_argument", ("%s: path must start with / and hold no query, got %s"):format(where, r.path)) end
    if path_source[r.path] and path_source[r.path] ~= r.source then
      fail("invalid_argument", ("%s: path %s already receives %s webhooks; one source per path"):format(where, r.path, path_source[r.path]))
    end
    path_source[r.path] = r.source
    if r.run == nil and r.service == nil then
      fail("invalid_argument", ("%s: give a run = function(event) ... end returning {service=, pipeline=, params=}, or a service and pipeline"):format(where))
    end
    if r.events then
      for j, e in ipairs(r.events) do
        if type(e) ~= "string" then fail("invalid_argument", ("%s: events[%d] must be a string"):format(where, j)) end
      end
    end
    r.secret = read_secret(where, r.secret_env, r.secret_file)
  end
  local gh = cfg.github or {}
  cfg.github = { api = (gh.api or M.defaults.github_api):gsub("/+$", "") }
  if gh.token_env or gh.token_file then cfg.github.token = read_secret("github", gh.token_env, gh.token_file) end
  for _, r in ipairs(cfg.routes) do
    if r.forward and not cfg.github.token then
      fail("invalid_argument", ("route %s forwards to GitHub: give github = {token_env = 'VARIABLE'} in the config"):format(r.name))
    end
  end
  return cfg
end

---------------------------------------------------------------- answering a request

local function reply(req, status, body, why, fields)
  local text = hoist.json.encode(body)
  req.reply:send { status = status, body = text, headers = status == 405 and { Allow = "POST" } or nil }
  if status >= 400 then
    local f = { status = status, path = req.path, remote = req.remote }
    for k, v in pairs(fields or {}) do f[k] = v end
    hoist.log.event("serve.refused", ("%d %s %s from %s: %s"):format(status, req.method, req.path, req.remote, why or body.error),
      f, "warn")
  end
end

local function refuse(req, status, why, fields) reply(req, status, { error = why }, why, fields) end

local function matches(route, name, action)
  if not route.events then return true end
  for _, e in ipairs(route.events) do
    if e == name or (action and e == name .. "." .. action) then return true end
  end
  return false
end

local name_ok = function(v) return type(v) == "string" and v:match("^[%w][%w_.%-]*$") ~= nil end

-- The route's answer to an event, checked: {service, pipeline, params, forward}; nil: ignored.
local function map_event(cfg, route, event)
  local out = { service = route.service, pipeline = route.pipeline, params = route.params, forward = route.forward }
  if route.run then
    local r = route.run(event)
    if r == nil or r == false then return nil end
    if type(r) ~= "table" then return nil, ("route %s: run must return a table or nil, got %s"):format(route.name, type(r)) end
    for k, v in pairs(r) do
      if out[k] == nil and k ~= "service" and k ~= "pipeline" and k ~= "params" and k ~= "forward" then
        return nil, ("route %s: run returned an unknown field '%s' (service, pipeline, params, forward)"):format(route.name, tostring(k))
      end
      out[k] = v
    end
  end
  if not name_ok(out.service) then
    return nil, ("route %s: service must be a name ([A-Za-z0-9][A-Za-z0-9_.-]*), got %s"):format(route.name, tostring(out.service))
  end
  if out.params ~= nil and type(out.params) ~= "table" then return nil, ("route %s: params must be a table"):format(route.name) end
  if out.forward then
    local f = type(out.forward) == "table" and out.forward or {}
    f = { repository = f.repository, event_type = f.event_type or event.name, client_payload = f.client_payload or out.params or {} }
    if type(f.repository) ~= "string" or not f.repository:match("^[%w_.%-]+/[%w_.%-]+$") then
      return nil, ("route %s: forward needs repository = 'owner/name'"):format(route.name)
    end
    out.forward, out.pipeline = f, nil
  elseif type(out.pipeline) ~= "string" or out.pipeline == "" then
    return nil, ("route %s: pipeline must be a bundled pipeline (container@1) or a file"):format(route.name)
  elseif out.pipeline:find("/", 1, true) or out.pipeline:match("%.lua$") then
    if out.pipeline:sub(1, 1) ~= "/" then out.pipeline = hoist.fs.absolute(cfg.dir .. "/" .. out.pipeline) end
  end
  return out
end

local function is_json(content_type)
  local t = (content_type or ""):lower():match("^%s*([^;%s]+)")
  return t == "application/json" or (t ~= nil and t:match("^application/[%w.%-]+%+json$") ~= nil)
end

-- The routes of the path whose secret verifies the signature (one verification per distinct
-- secret); none: nil and why.
local function authenticate(req, routes, source)
  local authentic, verdicts, why = {}, {}, nil
  for _, r in ipairs(routes) do
    local v = verdicts[r.secret]
    if v == nil then
      local ok, reason = source.verify(req, r.secret)
      v = ok == true
      verdicts[r.secret] = v
      why = why or reason
    end
    if v then authentic[#authentic + 1] = r end
  end
  if #authentic > 0 then return authentic end
  return nil, why or ("the %s signature does not match the body under the route's secret"):format(source.header_name)
end

-- Why a delivery signed at `ts` is refused, or nil. GitHub signs no time (its delivery id alone
-- stops a replay); every other source must.
local function stale(cfg, source_name, ts, delivery)
  if not ts then
    return source_name ~= "github" and ("delivery %s carries no signed time"):format(delivery) or nil
  end
  local age = os.time() - ts
  if age > cfg.stale_after or age < -cfg.stale_after then
    return ("delivery %s is stale: signed %ds %s, more than %ds (stale_after)"):format(delivery, math.floor(math.abs(age)),
      age > 0 and "ago" or "in the future", cfg.stale_after)
  end
end

local function message_of(e) return hoist.is_error(e) and e.message or tostring(e) end

-- The event through the first route that wants it: 202 once queued, 400/500 when a route's
-- function fails, 200 "ignored" when none wants it.
local function dispatch(ctx, req, routes, event, key)
  local delivery, f = event.delivery, { delivery = event.delivery }
  for _, route in ipairs(routes) do
    event.route = route.name
    local wanted = matches(route, event.name, event.action)
    if wanted and route.when then
      local ok, w = util.try(route.when, event)
      if not ok then return refuse(req, 400, ("route %s: when(event) failed on delivery %s: %s"):format(route.name, delivery, message_of(w)), f) end
      wanted = w and true or false
    end
    if wanted then
      local ok, job, problem = util.try(map_event, ctx.cfg, route, event)
      if not ok then
        return refuse(req, 400, ("route %s could not map delivery %s (%s): %s"):format(route.name, delivery, event.name, message_of(job)), f)
      end
      if problem then return refuse(req, 500, problem, f) end
      if job then
        -- again: `when` and `run` may have waited, and a copy of this delivery come meanwhile
        if ctx.queue:seen_before(key) then
          return refuse(req, 409, ("delivery %s was already accepted; a replay is not run again"):format(delivery), f)
        end
        local d = { id = key, delivery = delivery, source = event.source, route = route.name, event = event.name,
                    service = job.service, pipeline = job.pipeline, params = job.params, forward = job.forward }
        local position = ctx.queue:accept(d)
        hoist.log.event("serve.accepted", ("accepted %s delivery %s (%s) for service %s: %s"):format(event.source, delivery,
          event.name, d.service, d.forward and ("forward to " .. d.forward.repository) or d.pipeline),
          { delivery = delivery, route = route.name, service = d.service, position = position })
        return reply(req, 202, { accepted = true, delivery = delivery, service = d.service, position = position })
      end
    end
  end
  reply(req, 200, { accepted = false, ignored = true, delivery = delivery, event = event.name })
  hoist.log.info(("ignored %s delivery %s (%s): no route wants it"):format(event.source, delivery, event.name), f)
end

--- Answers one request (see the module comment for the order of checks).
---@param ctx {cfg: hoist.serve.Config, queue: table, by_path: table<string, hoist.serve.Route[]>}
---@param req table the request from hoist.native.serve
function M.handle(ctx, req)
  if req.path == "/healthz" and req.method == "GET" then
    local s = ctx.queue:stats()
    s.status = "ok"
    return reply(req, 200, s)
  end
  local routes = ctx.by_path[req.path]
  if not routes then return refuse(req, 404, "no route receives webhooks on " .. req.path) end
  if req.method ~= "POST" then return refuse(req, 405, "webhooks are POSTed, not sent with " .. req.method) end
  if not is_json(req.headers["content-type"]) then
    return refuse(req, 415, ("the body must be JSON (Content-Type: application/json), got %s"):format(
      req.headers["content-type"] or "no Content-Type"))
  end
  local name = routes[1].source
  local source = sources[name]
  if not req.headers[source.header] or req.headers[source.header] == "" then
    return refuse(req, 401, ("the %s header is missing: unsigned deliveries are refused"):format(source.header_name))
  end
  local authentic, why = authenticate(req, routes, source)
  if not authentic then return refuse(req, 401, why) end
  local ok, payload = pcall(hoist.json.decode, req.body)
  if not ok or type(payload) ~= "table" or hoist.json.kind(payload) == "array" then
    return refuse(req, 400, "the body is not a JSON object" .. (ok and "" or (": " .. message_of(payload))))
  end
  local delivery = source.delivery(req, payload)
  if type(delivery) ~= "string" or delivery == "" or #delivery > 200 then
    return refuse(req, 400, ("the delivery has no id (%s), or one longer than 200 characters"):format(
      name == "github" and "X-GitHub-Delivery" or "the delivery header"))
  end
  local f = { delivery = delivery }
  local ts = source.timestamp(req, payload)
  why = stale(ctx.cfg, name, ts, delivery)
  if why then return refuse(req, 401, why, f) end
  local key = req.path .. " " .. delivery
  local before = ctx.queue:seen_before(key)
  if before then
    ctx.queue.counts.replayed = ctx.queue.counts.replayed + 1
    return refuse(req, 409, ("delivery %s was already accepted (%s); a replay is not run again"):format(delivery,
      before.outcome or before.state), f)
  end
  local event_name, action = source.event(req, payload)
  if type(event_name) ~= "string" then return refuse(req, 400, ("delivery %s names no event"):format(delivery), f) end
  local headers = {}
  for k, v in pairs(req.headers) do
    if k ~= source.header and k ~= "authorization" then headers[k] = v end
  end
  dispatch(ctx, req, authentic, { source = name, name = event_name, action = action, delivery = delivery, timestamp = ts,
                                  payload = payload, headers = headers }, key)
end

---------------------------------------------------------------- running what was accepted

local function last_lines(text, n)
  local lines = {}
  for l in (text or ""):gmatch("[^\n]+") do
    lines[#lines + 1] = l
    if #lines > n then table.remove(lines, 1) end
  end
  return table.concat(lines, "\n")
end

-- `hoist run <pipeline> --run-id <run>` in a session of its own (setsid): neither a SIGTERM
-- nor a kill -9 of the server reaches it, and its output goes to a file, not a pipe to this
-- process; the next server finds it alive and waits for it. The shell around it notes its
-- pid and, when it ends, its exit code (for a server that was not there to see it); the argv
-- reaches the shell as positional parameters, never as text to parse. The run's parameters
-- are a 0600 file. After run_timeout the run gets SIGTERM (it rolls back), SIGKILL 60 s later.
local function run_local(ctx, d, run)
  local f = ctx.queue:run_files(run)
  hoist.fs.mkdir(ctx.queue.dir .. "/runs", { mode = "0700" })
  hoist.fs.write_file(f.params, hoist.json.encode(hoist.json.object(d.params or {})), { mode = "0600" })
  local bin = os.getenv("HOIST_BIN") or jnative.self().exe
  local timed_out = false
  local timer = hoist.spawn(function()
    hoist.sleep(ctx.cfg.run_timeout)
    local pid = (hoist.fs.read_file(f.pid, { missing_ok = true }) or ""):match("%d+")
    if not pid then return end
    timed_out = true
    hoist.log.warn(("run %s of delivery %s took longer than %gs (run_timeout): SIGTERM"):format(run, d.delivery, ctx.cfg.run_timeout))
    hoist.exec { "kill", "-TERM", pid }
    hoist.sleep(60)
    hoist.exec { "kill", "-KILL", pid }
  end)
  local r = hoist.exec { "sh", "-c", [[log=$1 code=$2 pid=$3; shift 3
setsid "$@" < /dev/null > "$log" 2>&1 &
echo $! > "$pid"
wait $!; c=$?
echo $c > "$code.tmp" && mv "$code.tmp" "$code"
exit $c]], "sh", f.log, f.code, f.pid, bin, "run", d.pipeline, "--run-id", run, "--state-dir", ctx.state_dir,
                         "--params-file", f.params, "--no-color" }
  timer:cancel()
  hoist.fs.remove(f.params)
  local outcome = timed_out and "timed_out" or queue.outcome_of(r.code)
  local tail
  if r.code ~= 0 then tail = hoist.scrub(last_lines(hoist.fs.read_file(f.log, { missing_ok = true }) or "", 6)):sub(-2000) end
  return { outcome = outcome, code = r.code, error = tail, log = f.log }
end

-- POST /repos/{owner}/{repo}/dispatches (GitHub answers 204), a few tries on 5xx and 429.
local function forward(ctx, d)
  local gh, f = ctx.cfg.github, d.forward
  local url = gh.api .. "/repos/" .. f.repository .. "/dispatches"
  local last
  for attempt = 1, 3 do
    local ok, r = util.try(hoist.http.post, url, {
      json = { event_type = f.event_type, client_payload = hoist.json.object(f.client_payload or {}) },
      headers = { Authorization = "Bearer " .. gh.token, Accept = "application/vnd.github+json",
                  ["X-GitHub-Api-Version"] = "2022-11-28" },
      timeout = 30 })
    if ok and r.status == 204 then return { outcome = "forwarded", code = 204 } end
    if ok then
      local message = type(r.json) == "table" and r.json.message or r.body:sub(1, 300)
      last = ("GitHub answered %d to the repository_dispatch of %s: %s"):format(r.status, f.repository, tostring(message))
      if r.status < 500 and r.status ~= 429 then return { outcome = "forward_failed", code = r.status, error = last } end
    else
      last = hoist.is_error(r) and r.message or tostring(r)
    end
    if attempt < 3 then hoist.sleep(attempt) end
  end
  return { outcome = "forward_failed", error = last }
end

-- M.handle, and a 500 at once when it fails (a full disk, a bug): the sender retries.
local function answer(ctx, req)
  local ok, err = util.try(M.handle, ctx, req)
  if not ok then
    local why = hoist.is_error(err) and err.message or tostring(err)
    req.reply:send { status = 500, body = hoist.json.encode { error = "hoist serve could not take the delivery: " .. why } }
    hoist.log.error(("500 %s %s from %s: %s"):format(req.method, req.path, req.remote, why), { path = req.path })
  end
end

local function parse_listen(text)
  local host, port = text:match("^%[([%x:]+)%]:(%d+)$")
  if not host then host, port = text:match("^([%d%.]+):(%d+)$") end
  if not host then fail("invalid_argument", ("listen must be HOST:PORT with a numeric host (127.0.0.1:8787), got %s"):format(text)) end
  return host, tonumber(port)
end

--- `hoist serve`: loads the config, recovers the queue, listens, and answers until SIGTERM.
--- With a.check: prints the routes and returns.
---@param a {config: string, listen?: string, state_dir: string, tls_cert?: string, tls_key?: string, max_body?: integer, check?: boolean}
function M.main(a)
  local cfg = M.load_config(a.config)
  if a.check then
    for _, r in ipairs(cfg.routes) do
      io.stdout:write(("%s: POST %s (%s%s)%s\n"):format(r.name, r.path, r.source,
        r.events and (": " .. table.concat(r.events, ", ")) or ": every event", r.forward and " forwarded to GitHub" or ""))
    end
    return
  end
  local state_dir = (a.state_dir and a.state_dir ~= "") and a.state_dir or ".hoist"
  local host, port = parse_listen((a.listen and a.listen ~= "") and a.listen or cfg.listen)
  local by_path = {}
  for _, r in ipairs(cfg.routes) do
    by_path[r.path] = by_path[r.path] or {}
    table.insert(by_path[r.path], r)
  end
  local ctx = { cfg = cfg, by_path = by_path, state_dir = state_dir }
  ctx.queue = queue.open { state_dir = state_dir, retention = cfg.dedup_days * 86400, lock_timeout = cfg.lock_timeout,
                           runner = function(d, run)
                             if d.forward then return forward(ctx, d) end
                             return run_local(ctx, d, run)
                           end }
  local max_body = (a.max_body and a.max_body > 0) and a.max_body or cfg.max_body
  local server = native.listen { host = host, port = port, tls_cert = a.tls_cert, tls_key = a.tls_key, max_body = max_body }
  ctx.queue:resume() -- what the last server left: only once this one can take deliveries too
  local url = ("%s://%s:%d"):format(server:tls() and "https" or "http", host:find(":") and ("[" .. host .. "]") or host, server:port())
  -- where a script or a test finds the port (listen on port 0 picks one)
  hoist.fs.write_file(ctx.queue.dir .. "/listening.json", hoist.json.encode {
    url = url, port = server:port(), pid = jnative.self().pid, tls = server:tls() })
  if not server:tls() and host ~= "127.0.0.1" and host ~= "::1" then
    hoist.log.warn(("hoist serve: plain HTTP on %s: the signatures keep deliveries from being forged or replayed, "
      .. "not from being read; give --tls-cert and --tls-key, or put a TLS proxy in front"):format(host))
  end
  local paths = util.sorted_keys(by_path)
  hoist.log.event("serve.listening", ("hoist serve: listening on %s (%s), state in %s"):format(url, table.concat(paths, ", "), state_dir),
    { url = url, paths = paths, state_dir = state_dir }, "info")
  local ok, err = pcall(function()
    while true do
      util.await(server:wait())
      local req = server:next()
      if req then hoist.spawn(answer, ctx, req) end
    end
  end)
  server:close()
  local running = ctx.queue:stats().running
  if hoist.is_error(err, "cancelled") then
    hoist.log.info(("hoist serve: stopped%s"):format(running > 0 and
      (("; %d run(s) in flight go on, the next hoist serve records them"):format(running)) or ""))
  else
    hoist.log.error(("hoist serve: stopped: %s"):format(message_of(err)))
  end
  error(err, 0)
end

--- The headers a sender of `source` sends with `body` (MLflow, Databricks, GitHub or
--- generic): for tests, and to sign the generic source's deliveries from a script.
---@param opts {source: string, secret: string, body: string, delivery?: string, timestamp?: integer, event?: string}
---@return table<string, string>
function M.sign(opts)
  local o = util.check_opts("hoist.serve.sign", opts, { source = "string", secret = "string", body = "string",
                                                        delivery = "string", timestamp = "number", event = "string" })
  local s = sources[o.source]
  if type(s) ~= "table" or not s.sign then
    fail("invalid_argument", ("hoist.serve.sign: source must be one of %s"):format(table.concat(sources.names, ", ")))
  end
  local h = s.sign(o.secret, o.body, { delivery = o.delivery or require("hoist.native.core").new_run_id(), timestamp = o.timestamp or os.time(), event = o.event or "ping" })
  h["Content-Type"] = "application/json"
  return h
end

return M
