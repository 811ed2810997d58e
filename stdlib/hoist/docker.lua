--- hoist.docker: the docker CLI as Lua functions: build, tag, push (digest read back from the
--- registry), login, and run / stop / rm / logs / inspect / wait_healthy for smoke tests.
--- Every call that changes something honours dry-run (a "plan" event, nothing runs).
local cli = require "hoist.docker.cli"
local builder = require "hoist.docker.build"
local util = require "hoist.util"

local M = {}

M.build = builder.build
M.parse_build_failure = builder.parse_failure

local fail, opt = cli.fail, cli.opt

-- Accepts f("x") and f{name = "x", ...}: returns the options table.
local function options(fn, v, key)
  if type(v) == "string" then return { [key] = v } end
  if type(v) ~= "table" then fail("invalid_argument", ("%s: expected %s or an options table"):format(fn, key)) end
  return v
end

---------------------------------------------------------------- images

--- Tags an image: `docker tag source target`.
---@param source string
---@param target string
---@return {source: string, target: string, planned?: boolean, argv?: string[]}
function M.tag(source, target)
  cli.check_image("docker.tag", "source", source)
  cli.check_image("docker.tag", "target", target)
  local args = { "tag", source, target }
  if cli.dry_run() then return cli.plan("docker.tag", args, { source = source, target = target }) end
  cli.check("tag " .. target, args, { timeout = 60 })
  return { source = source, target = target }
end

---@class hoist.docker.PushResult
---@field image string
---@field digest string "sha256:..." as the registry serves it
---@field reference string repository@digest
---@field planned? boolean

-- The environment that points docker at another config folder (DOCKER_CONFIG), or nil.
local function config_env(fn, o)
  local dir = opt(fn, o, "config", "string")
  return dir and { DOCKER_CONFIG = dir } or nil
end

--- Pushes an image and reads its digest back from the registry. `config`: a docker config
--- folder to use instead of ~/.docker (DOCKER_CONFIG), e.g. one a private docker.login wrote.
--- `auth`: the credentials hoist's registry client reads the digest with (see
--- registry.resolve's `auth`), for a push whose login went to a private config folder.
---@param image string|{image: string, config?: string, auth?: table, timeout?: number, stream?: boolean}
---@return hoist.docker.PushResult
function M.push(image)
  local o = options("docker.push", image, "image")
  image = cli.check_image("docker.push", "image", o.image)
  local env = config_env("docker.push", o)
  local args = { "push", image }
  if cli.dry_run() then return cli.plan("docker.push", args, { image = image, digest = "dry-run" }) end
  cli.check("push " .. image, args, { timeout = o.timeout, stream = o.stream ~= false, env = env })
  -- The digest the registry serves (what a deployment will pull), not text from docker's output.
  local auth = opt("docker.push", o, "auth", "table")
  local registry = require("hoist.registry")
  local digest = (auth and registry.resolve { image = image, auth = auth } or registry.resolve(image)).digest
  local repo = hoist.image.parse(image).repository
  hoist.log.event("docker.pushed", ("pushed %s (%s)"):format(image, digest), { image = image, digest = digest })
  return { image = image, digest = digest, reference = repo .. "@" .. digest }
end

--- Logs in to a registry; the password goes on docker's stdin only and is registered as a
--- secret first. docker stores the credentials in ~/.docker/config.json, or in the folder
--- `config` names (DOCKER_CONFIG): give a private folder to leave the user's file alone.
---@param opts {registry: string, username: string, password: string, config?: string, timeout?: number}
---@return {registry: string, username: string, planned?: boolean}
function M.login(opts)
  local fn = "docker.login"
  if type(opts) ~= "table" then fail("invalid_argument", fn .. ": expected {registry=, username=, password=}") end
  local password = opt(fn, opts, "password", "string", true)
  hoist.secret(password)
  local registry = opt(fn, opts, "registry", "string", true)
  local username = opt(fn, opts, "username", "string", true)
  local env = config_env(fn, opts)
  local args = { "login", "--username", username, "--password-stdin", registry }
  if cli.dry_run() then return cli.plan("docker.login", args, { registry = registry, username = username }) end
  local r = cli.exec(args, { stdin = password, timeout = opts.timeout or 60, env = env })
  if r.code ~= 0 then
    local code = cli.classify(r.stderr)
    cli.raise("login " .. registry, r, nil, code == "tool_failed" and "unauthorized" or code)
  end
  return { registry = registry, username = username }
end

--- Logs out of a registry.
---@param registry string
---@return {registry: string, planned?: boolean}
function M.logout(registry)
  opt("docker.logout", { registry = registry }, "registry", "string", true)
  local args = { "logout", registry }
  if cli.dry_run() then return cli.plan("docker.logout", args, { registry = registry }) end
  cli.check("logout " .. registry, args, { timeout = 60 })
  return { registry = registry }
end

---------------------------------------------------------------- containers

-- "[host:][host_port:]container_port[/proto]" -> host?, host_port, container_port, proto
local function parse_port(where, p)
  local proto
  local body = p:gsub("/(%a+)$", function(x) proto = x; return "" end)
  local bracket, rest = body:match("^%[(.-)%]:(.*)$") -- an IPv6 host
  local parts = {}
  for part in ((rest or body) .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = part end
  if bracket then table.insert(parts, 1, bracket) end
  if #parts == 1 then return nil, "", parts[1], proto end
  if #parts == 2 and not bracket then return nil, parts[1], parts[2], proto end
  if #parts == 3 then return parts[1], parts[2], parts[3], proto end
  fail("invalid_argument", ("%s: %q is not [host:][host_port:]container_port[/proto]"):format(where, p))
end

-- "8080:80" -> "127.0.0.1:8080:80": containers listen on loopback unless asked otherwise.
local function port_flag(fn, i, p)
  local where = ("%s: ports[%d]"):format(fn, i)
  local host, host_port, container, proto
  if type(p) == "number" then p = tostring(p) end
  if type(p) == "string" then
    host, host_port, container, proto = parse_port(where, p)
  elseif type(p) == "table" and type(p[1]) == "string" then
    host, host_port, container, proto = parse_port(where, p[1])
    host = p.host or host
  elseif type(p) == "table" then
    host, host_port, container, proto = p.host, p.host_port, p.container_port, p.protocol
  else
    fail("invalid_argument", where .. " must be a string like \"8080:80\" or a table {host_port=, container_port=}")
  end
  host_port, container = tostring(host_port or ""), tostring(container or "")
  if not container:match("^%d+$") and not container:match("^%d+%-%d+$") then
    fail("invalid_argument", ("%s: container port %q must be a number or a range"):format(where, container))
  end
  if host_port ~= "" and not host_port:match("^%d+$") and not host_port:match("^%d+%-%d+$") then
    fail("invalid_argument", ("%s: host port %q must be a number or a range"):format(where, host_port))
  end
  if proto and proto ~= "tcp" and proto ~= "udp" and proto ~= "sctp" then
    fail("invalid_argument", ("%s: protocol %q must be tcp, udp or sctp"):format(where, proto))
  end
  host = host or "127.0.0.1"
  if type(host) ~= "string" or host == "" or host:find("[%s/]") then
    fail("invalid_argument", ("%s: host %q must be an IP address"):format(where, tostring(host)))
  end
  if host:find(":") then host = "[" .. host .. "]" end
  return ("%s:%s:%s%s"):format(host, host_port, container, proto and ("/" .. proto) or "")
end
M._port_flag = port_flag

local function env_file_text(fn, env)
  local lines, names = {}, {}
  for _, k in ipairs(util.sorted_keys(env)) do
    if not tostring(k):match("^[%a_][%w_]*$") then
      fail("invalid_argument", ("%s: env name %q must be letters, digits and '_'"):format(fn, tostring(k)))
    end
    local v = env[k]
    if type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" then
      fail("invalid_argument", ("%s: env.%s must be a string, number or boolean"):format(fn, k))
    end
    v = tostring(v)
    if v:find("[\r\n]") then fail("invalid_argument", ("%s: env.%s holds a line break (env files cannot)"):format(fn, k)) end
    lines[#lines + 1] = k .. "=" .. v
    names[#names + 1] = k
  end
  return table.concat(lines, "\n") .. "\n", names
end

---@class hoist.docker.RunOptions
---@field image string
---@field name? string container name
---@field ports? (string|table)[] "8080:80" publishes on 127.0.0.1; {"8080:80", host="0.0.0.0"} or {host=, host_port=, container_port=, protocol=} to choose
---@field env? table<string, string|number|boolean> passed through a private env file, never on the command line
---@field labels? table<string, string>
---@field network? string
---@field restart? string no|always|unless-stopped|on-failure[:N]
---@field detach? boolean default true
---@field rm? boolean remove the container when it exits
---@field args? string[] more `docker run` options, placed before the image
---@field command? string|string[] the container's command (after the image)
---@field timeout? number seconds

--- The host ports a container publishes: `{[8080] = 49153}` for tcp (the container port as a
--- number), `{["53/udp"] = 5353}` for other protocols; the first host binding of each.
---@param info table `docker inspect` of a container
---@return table<integer|string, integer>
function M.published_ports(info)
  local out = {}
  local ports = info and info.NetworkSettings and info.NetworkSettings.Ports or {}
  for key, bindings in pairs(type(ports) == "table" and ports or {}) do
    local port, proto = tostring(key):match("^(%d+)/(%a+)$")
    if port and type(bindings) == "table" then
      for _, b in ipairs(bindings) do
        local hp = tonumber(b.HostPort)
        if hp then
          out[proto == "tcp" and tonumber(port) or key] = hp
          break
        end
      end
    end
  end
  return out
end

---@class hoist.docker.RunResult
---@field id string
---@field name? string
---@field ports? table<integer|string, integer> detached: host port of each published container port (see published_ports)
---@field code? integer detach = false: the container's exit code
---@field stdout? string
---@field stderr? string
---@field planned? boolean

--- Starts a container. Detached (the default): returns its id, name and published ports
--- (`r.ports[8080]` is the host port docker picked for "8080"); with detach = false: waits
--- and returns its exit code and output instead of ports.
---@param opts hoist.docker.RunOptions
---@return hoist.docker.RunResult
function M.run(opts)
  local fn = "docker.run"
  if type(opts) ~= "table" then fail("invalid_argument", fn .. ": expected an options table {image=, ...}") end
  local image = cli.check_image(fn, "image", opts.image)
  for _, name in ipairs { "name", "network", "restart" } do opt(fn, opts, name, "string") end
  if opts.restart and not (opts.restart:match("^no$") or opts.restart:match("^always$")
      or opts.restart:match("^unless%-stopped$") or opts.restart:match("^on%-failure:?%d*$")) then
    fail("invalid_argument", fn .. ": option restart must be no, always, unless-stopped or on-failure[:N]")
  end
  local labels = opt(fn, opts, "labels", "map") or {}
  local env = opt(fn, opts, "env", "map") or {}
  local extra = opt(fn, opts, "args", "list") or {}
  local command = opt(fn, opts, "command", "list") or {}
  local ports = opt(fn, opts, "ports", "table") or {}
  local detach = opts.detach ~= false

  local args = { "run" }
  if detach then args[#args + 1] = "--detach" end
  if opts.rm then args[#args + 1] = "--rm" end
  if opts.name then args[#args + 1] = "--name"; args[#args + 1] = opts.name end
  if opts.network then args[#args + 1] = "--network"; args[#args + 1] = opts.network end
  if opts.restart then args[#args + 1] = "--restart"; args[#args + 1] = opts.restart end
  for _, k in ipairs(util.sorted_keys(labels)) do args[#args + 1] = "--label"; args[#args + 1] = k .. "=" .. tostring(labels[k]) end
  for i, p in ipairs(ports) do args[#args + 1] = "--publish"; args[#args + 1] = port_flag(fn, i, p) end
  local env_text, env_names = env_file_text(fn, env)

  local function finish(env_file)
    local full = {}
    for _, a in ipairs(args) do full[#full + 1] = a end
    if #env_names > 0 then full[#full + 1] = "--env-file"; full[#full + 1] = env_file end
    for _, a in ipairs(extra) do full[#full + 1] = a end
    full[#full + 1] = image
    for _, a in ipairs(command) do full[#full + 1] = a end
    return full
  end

  if cli.dry_run() then
    local plan = cli.plan("docker.run", finish("<env-file: " .. table.concat(env_names, ",") .. ">"),
      { image = image, name = opts.name, env = env_names })
    plan.id = "dry-run"
    plan.name = opts.name
    plan.ports = {}
    return plan
  end
  return cli.with_files(function(files)
    local argv = finish(#env_names > 0 and files:new(env_text) or nil)
    local cidfile
    if not detach then -- the id comes from --cidfile, which docker wants not to exist yet
      cidfile = files:new()
      os.remove(cidfile)
      table.insert(argv, 2, "--cidfile")
      table.insert(argv, 3, cidfile)
    end
    local r = cli.exec(argv, { timeout = opts.timeout or (detach and 300 or nil) })
    if r.code ~= 0 and (detach or r.code == 125) then cli.raise("run " .. image, r) end
    local id = detach and r.stdout:match("(%x+)%s*$") or (cli.read_file(cidfile) or ""):match("%x+")
    local name, info = opts.name, nil
    -- docker chose the name, or the host ports (a --rm container may be gone already)
    if id and (not name or (detach and #ports > 0)) then
      local ok, i = util.try(M.inspect, { name = id, type = "container" })
      if ok then info = i end
    end
    if not name and info then name = (info.Name or ""):gsub("^/", "") end
    local what = detach and "started" or ("ran (exit code %d)"):format(r.code)
    hoist.log.event("docker.run", ("%s %s (%s) from %s"):format(what, name or "container", (id or "?"):sub(1, 12), image),
      { id = id, name = name, image = image, code = not detach and r.code or nil })
    if detach then return { id = id, name = name, ports = info and M.published_ports(info) or {} } end
    return { id = id, name = name, code = r.code, stdout = r.stdout, stderr = r.stderr }
  end)
end

-- stop / rm / rmi: one shape. missing_ok turns not_found into {missing = true}.
local function remove_like(fn, verb, o, key, extra_flags)
  local target = opt(fn, o, key, "string", true)
  local args = { verb }
  for _, f in ipairs(extra_flags) do args[#args + 1] = f end
  args[#args + 1] = target
  if cli.dry_run() then return cli.plan(fn, args, { [key] = target }) end
  local r = cli.exec(args, { timeout = (o.timeout or 10) + 60 })
  if r.code ~= 0 then
    if o.missing_ok and cli.classify(r.stderr) == "not_found" then return { [key] = target, missing = true } end
    cli.raise(verb .. " " .. target, r)
  end
  return { [key] = target }
end

--- Stops a container (SIGTERM, then SIGKILL after `timeout` seconds, default 10).
---@param opts string|{name: string, timeout?: integer, missing_ok?: boolean}
---@return {name: string, missing?: boolean, planned?: boolean}
function M.stop(opts)
  local o = options("docker.stop", opts, "name")
  if o.timeout ~= nil and (type(o.timeout) ~= "number" or o.timeout < 0) then
    fail("invalid_argument", "docker.stop: option timeout must be a number of seconds >= 0")
  end
  return remove_like("docker.stop", "stop", o, "name", { "--time", tostring(math.floor(o.timeout or 10)) })
end

--- Removes a container.
---@param opts string|{name: string, force?: boolean, volumes?: boolean, missing_ok?: boolean}
---@return {name: string, missing?: boolean, planned?: boolean}
function M.rm(opts)
  local o = options("docker.rm", opts, "name")
  local flags = {}
  if o.force then flags[#flags + 1] = "--force" end
  if o.volumes then flags[#flags + 1] = "--volumes" end
  return remove_like("docker.rm", "rm", o, "name", flags)
end

--- Removes an image.
---@param opts string|{image: string, force?: boolean, missing_ok?: boolean}
---@return {image: string, missing?: boolean, planned?: boolean}
function M.rmi(opts)
  local o = options("docker.rmi", opts, "image")
  return remove_like("docker.rmi", "rmi", o, "image", o.force and { "--force" } or {})
end

--- A container's output, stdout and stderr merged in time order.
---@param opts string|{name: string, tail?: integer, since?: string, timestamps?: boolean}
---@return string
function M.logs(opts)
  local o = options("docker.logs", opts, "name")
  local name = opt("docker.logs", o, "name", "string", true)
  local args = { "logs", "--timestamps" }
  if o.tail then args[#args + 1] = "--tail"; args[#args + 1] = tostring(o.tail) end
  if o.since then args[#args + 1] = "--since"; args[#args + 1] = tostring(o.since) end
  args[#args + 1] = name
  local r = cli.check("logs " .. name, args, { timeout = o.timeout or 60 })
  -- Docker's timestamps have a fixed width, so text order is time order.
  local a, b = cli.lines(r.stdout), cli.lines(r.stderr)
  local merged, i, j = {}, 1, 1
  while i <= #a or j <= #b do
    local take_a = j > #b or (i <= #a and a[i] <= b[j])
    local line = take_a and a[i] or b[j]
    if take_a then i = i + 1 else j = j + 1 end
    merged[#merged + 1] = o.timestamps and line or line:gsub("^%d%d%d%d%-%S+Z ?", "")
  end
  return #merged > 0 and table.concat(merged, "\n") .. "\n" or ""
end

--- What docker knows about a container or image (`docker inspect`), decoded. Raises
--- not_found when there is no such object.
---@param opts string|{name: string, type?: "container"|"image"}
---@return table
function M.inspect(opts)
  local o = options("docker.inspect", opts, "name")
  local name = opt("docker.inspect", o, "name", "string", true)
  local args = { "inspect" }
  if o.type then
    if o.type ~= "container" and o.type ~= "image" then
      fail("invalid_argument", "docker.inspect: option type must be \"container\" or \"image\"")
    end
    args[#args + 1] = "--type"; args[#args + 1] = o.type
  end
  args[#args + 1] = name
  local r = cli.exec(args, { timeout = o.timeout or 60 })
  if r.code ~= 0 then
    local code = cli.classify(r.stderr)
    cli.raise("inspect " .. name, r, nil, code == "tool_failed" and "not_found" or code)
  end
  return hoist.json.decode(r.stdout)[1]
end

--- True when a container (or image, with type = "image") of that name exists.
---@param opts string|{name: string, type?: "container"|"image"}
---@return boolean
function M.exists(opts)
  local ok, err = pcall(M.inspect, opts)
  if ok then return true end
  if hoist.is_error(err, "not_found") then return false end
  error(err, 0)
end

local function snake(key) return (key:gsub("(%l)(%u)", "%1_%2"):lower()) end

local function filter_args(fn, filters)
  local out = {}
  if filters == nil then return out end
  if type(filters) ~= "table" then fail("invalid_argument", fn .. ": option filters must be a table") end
  for _, f in ipairs(filters) do out[#out + 1] = "--filter"; out[#out + 1] = tostring(f) end
  for _, k in ipairs(util.sorted_keys(filters)) do
    if type(k) == "string" then
      local v = filters[k]
      for _, one in ipairs(type(v) == "table" and v or { v }) do
        out[#out + 1] = "--filter"; out[#out + 1] = k .. "=" .. tostring(one)
      end
    end
  end
  return out
end

-- Runs a `--format '{{json .}}'` listing; one decoded row per line, keys in snake_case.
local function listing(fn, args)
  local r = cli.check(args[1], args, { timeout = 60 })
  local rows = {}
  for line in r.stdout:gmatch("[^\n]+") do
    local row = {}
    for k, v in pairs(hoist.json.decode(line)) do row[snake(k)] = v end
    if type(row.labels) == "string" then
      local labels = {}
      for pair in row.labels:gmatch("[^,]+") do
        local k, v = pair:match("^([^=]+)=?(.*)$")
        if k then labels[k] = v end
      end
      row.labels = labels
    end
    if row.names then row.name = row.names:match("^[^,]+") end
    rows[#rows + 1] = row
  end
  return rows
end

--- Containers (`docker ps`): rows with id, name, image, state, status, ports, labels, ...
---@param opts? {filters?: table, all?: boolean}
---@return table[]
function M.ps(opts)
  opts = opts or {}
  local args = { "ps", "--no-trunc", "--format", "{{json .}}" }
  if opts.all then args[#args + 1] = "--all" end
  for _, a in ipairs(filter_args("docker.ps", opts.filters)) do args[#args + 1] = a end
  return listing("docker.ps", args)
end

--- Local images (`docker images`): rows with repository, tag, id, digest, size, ...
---@param opts? {reference?: string, filters?: table, all?: boolean}
---@return table[]
function M.images(opts)
  opts = opts or {}
  local args = { "images", "--no-trunc", "--digests", "--format", "{{json .}}" }
  if opts.all then args[#args + 1] = "--all" end
  for _, a in ipairs(filter_args("docker.images", opts.filters)) do args[#args + 1] = a end
  if opts.reference then args[#args + 1] = opt("docker.images", opts, "reference", "string") end
  return listing("docker.images", args)
end

M.wait_healthy = require("hoist.docker.health").wait_healthy

return M
