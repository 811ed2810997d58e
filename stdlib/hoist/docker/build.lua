--- hoist.docker.build: `docker build` with BuildKit when this docker has it and the classic
--- builder otherwise, OCI labels from git, build secrets in private files, and failures
--- reported as the failing step with its output. Reached as hoist.docker.build.
local cli = require "hoist.docker.cli"
local util = require "hoist.util"

local M = {}

---------------------------------------------------------------- failure parsing

-- BuildKit's plain progress: "#6 [3/4] RUN ...", "#6 1.232 output", "#6 ERROR: ...".
local function parse_buildkit(lines)
  local steps, order, failed = {}, {}, nil
  for _, line in ipairs(lines) do
    local n, rest = line:match("^#(%d+) (.*)$")
    if n then
      local s = steps[n]
      if not s then
        s = { output = {} }
        steps[n] = s
        order[#order + 1] = n
      end
      local pos, name = rest:match("^%[([^%]]+)%] (.*)$")
      if pos then
        s.position, s.instruction = pos, name
      elseif rest:match("^ERROR: ") or rest:match("^ERROR$") then
        s.error = rest:gsub("^ERROR:?%s*", "")
        failed = failed or s
      elseif not (rest:match("^sha256:%x+$") or rest:match("^DONE ") or rest == "CACHED"
          or rest:match("^building with ")) then
        s.output[#s.output + 1] = rest:gsub("^%d+%.%d+ ", "")
      end
    end
  end
  return failed
end

-- The classic builder: "Step 3/4 : RUN ...", then the step's output until the next step.
local function parse_classic(lines)
  local current
  for _, line in ipairs(lines) do
    local pos, instr = line:match("^Step (%d+/%d+) : (.*)$")
    if pos then
      current = { position = pos, instruction = instr, output = {} }
    elseif current and not (line:match("^ %-%-%-> ") or line:match("^Removing intermediate container")
        or line:match("^Sending build context")) then
      current.output[#current.output + 1] = line
    end
  end
  return current
end

---@class hoist.docker.BuildFailure
---@field position? string "3/4" (or "stage 3/4" with BuildKit)
---@field instruction? string the failing instruction, e.g. "RUN make"
---@field output string[] that step's output lines (at most 20)
---@field error string what docker said went wrong
---@field tail string[] the last 20 lines of the whole build output

--- Reads a failed build's output: which step failed, its output, docker's error.
--- Internal: hoist.docker.build's reading of docker's output.
---@param stdout string
---@param stderr string
---@param builder "buildkit"|"classic"
---@return hoist.docker.BuildFailure
function M.parse_failure(stdout, stderr, builder)
  local out_lines, err_lines = cli.lines(stdout), {}
  -- docker 23+ opens stderr with a "DEPRECATED: The legacy builder..." notice: not evidence.
  local in_notice = false
  for _, l in ipairs(cli.lines(stderr)) do
    if l:match("^DEPRECATED:") then
      in_notice = true
    elseif in_notice and (l == "" or l:match("^%s")) then
      in_notice = l ~= ""
    else
      in_notice = false
      err_lines[#err_lines + 1] = l
    end
  end
  local all = {}
  for _, l in ipairs(out_lines) do all[#all + 1] = l end
  for _, l in ipairs(err_lines) do all[#all + 1] = l end
  local step
  if builder == "buildkit" then
    step = parse_buildkit(all)
  else
    step = parse_classic(out_lines)
    -- The classic builder prints "Step" lines on stdout and its verdict on stderr; a step
    -- that never ran (the daemon refused the Dockerfile) is no failing step.
    if step and #step.output == 0 and cli.reason(stderr):match("^Error response from daemon") then step = nil end
  end
  local reason = cli.reason(table.concat(err_lines, "\n"))
  if reason == "no error message" then reason = cli.reason(stdout) end
  local output = {}
  for _, l in ipairs(step and step.output or {}) do
    if l:match("%S") then output[#output + 1] = l end
  end
  return {
    position = step and step.position,
    instruction = step and step.instruction,
    output = cli.tail(output, 20),
    error = step and step.error or reason,
    tail = cli.tail(all, 20),
  }
end

--- The one-paragraph message for a failed build.
--- Internal: hoist.docker.build's reading of docker's output.
---@param f hoist.docker.BuildFailure
---@return string
function M.failure_message(f)
  local head
  if f.instruction then
    head = ("docker build failed at step %s `%s`: %s"):format(f.position or "?", f.instruction, f.error)
  else
    head = "docker build failed: " .. f.error
  end
  local shown = cli.tail(f.output, 10)
  if #shown == 0 then return head end
  return head .. "\n  | " .. table.concat(shown, "\n  | ")
end

---------------------------------------------------------------- builder choice

local buildx_by_binary = {}

-- "buildkit" or "classic", and why (told in a docker.builder event).
local function choose_builder(requested)
  if requested == "classic" or requested == "buildkit" then
    return requested, ("builder = %q was asked for"):format(requested)
  end
  local env = os.getenv("DOCKER_BUILDKIT")
  if env == "0" then return "classic", "DOCKER_BUILDKIT=0 is set" end
  local bin = cli.binary()
  if buildx_by_binary[bin] == nil then
    local r = cli.exec({ "buildx", "version" }, { timeout = 30 })
    buildx_by_binary[bin] = r.code == 0 and (cli.lines(r.stdout)[1] or "buildx") or false
  end
  if buildx_by_binary[bin] then return "buildkit", "docker buildx is installed: " .. buildx_by_binary[bin] end
  if env == "1" then return "buildkit", "DOCKER_BUILDKIT=1 is set (the CLI's own BuildKit; no buildx)" end
  return "classic", "docker buildx is missing, so the classic builder runs (no build secrets, no cache export)"
end

---------------------------------------------------------------- options

local function created_stamp()
  local epoch = tonumber(os.getenv("SOURCE_DATE_EPOCH") or "")
  return os.date("!%Y-%m-%dT%H:%M:%SZ", epoch)
end

-- org.opencontainers.image.{source,revision,created}; git facts only when the context is
-- inside a work tree (or CI's variables tell them).
local function oci_labels(opts)
  if opts.oci_labels == false then return {} end
  local labels = { ["org.opencontainers.image.created"] = created_stamp() }
  local ok, info = true, opts.git
  if info == nil then ok, info = util.try(hoist.git.info, { dir = opts.context }) end
  if ok and type(info) == "table" then
    labels["org.opencontainers.image.revision"] = info.sha
    labels["org.opencontainers.image.source"] = info.remote_url
  else
    hoist.log.debug("docker.build: no git facts for OCI labels: " .. tostring(info))
  end
  return labels
end

local function secret_flags(fn, secrets, files)
  local flags = {}
  for i, s in ipairs(secrets) do
    local where = ("%s: secrets[%d]"):format(fn, i)
    if type(s) ~= "table" or type(s.id) ~= "string" or not s.id:match("^[%w._%-]+$") then
      cli.fail("invalid_argument", where .. " needs id = a name of letters, digits, '.', '_' or '-'")
    end
    local n = (s.src and 1 or 0) + (s.env and 1 or 0) + (s.value and 1 or 0)
    if n ~= 1 then cli.fail("invalid_argument", where .. " needs exactly one of src=, env= or value=") end
    local src = s.src
    if s.env then
      local v = os.getenv(s.env)
      if not v then cli.fail("invalid_argument", ("%s: environment variable %s is not set"):format(where, s.env)) end
      src = files:new(hoist.secret(v))
    elseif s.value then
      if type(s.value) ~= "string" then cli.fail("invalid_argument", where .. ".value must be a string") end
      src = files:new(hoist.secret(s.value))
    elseif not cli.exists(src) then
      cli.fail("invalid_argument", ("%s.src: cannot read %s"):format(where, tostring(src)))
    end
    flags[#flags + 1] = "--secret"
    flags[#flags + 1] = ("id=%s,src=%s"):format(s.id, src)
  end
  return flags
end

local function add_map(args, flag, map, fn, name)
  for _, k in ipairs(util.sorted_keys(map)) do
    local v = tostring(map[k])
    if hoist.scrub(v) ~= v then
      cli.fail("invalid_argument", ("%s: %s.%s holds a registered secret, and %s are stored in the image; "
        .. "pass it with secrets = {{id=, env=}} and RUN --mount=type=secret"):format(fn, name, k, name))
    end
    args[#args + 1] = flag
    args[#args + 1] = k .. "=" .. v
  end
end

---------------------------------------------------------------- build

---@class hoist.docker.BuildOptions
---@field context string the build context folder
---@field file? string the Dockerfile (default context/Dockerfile)
---@field tags? string|string[] image references to tag the result with
---@field build_args? table<string, string|number|boolean>
---@field labels? table<string, string> added to (and overriding) the OCI labels
---@field oci_labels? boolean add org.opencontainers.image.source/revision/created (default true)
---@field git? hoist.git.Info commit facts for the OCI labels (default: read from context)
---@field target? string stage to build
---@field platform? string e.g. "linux/amd64"
---@field cache_from? string|string[] images whose layers the build may reuse (the previous build, pushed); with the classic builder each is pulled first (one that cannot be is warned about and left out); a BuildKit cache spec ("type=registry,ref=...") needs BuildKit
---@field cache_to? string|string[] BuildKit only ("type=inline", "type=registry,ref=...,mode=max")
---@field config? string a docker config folder (DOCKER_CONFIG) for the pulls of the build (a private docker.login's)
---@field pull? boolean always pull newer base images
---@field no_cache? boolean
---@field secrets? {id: string, src?: string, env?: string, value?: string}[] BuildKit only
---@field builder? "auto"|"buildkit"|"classic" default "auto"
---@field timeout? number seconds
---@field stream? boolean echo the build output to the log (default true)

---@class hoist.docker.BuildResult
---@field id string image id "sha256:..." ("dry-run" in dry-run mode)
---@field tags string[]
---@field builder "buildkit"|"classic"
---@field duration? number seconds
---@field planned? boolean true in dry-run mode
---@field argv? string[] the command line (dry-run mode)

--- Builds an image. Raises invalid_argument for bad options, tool_missing without docker
--- (or for secrets without BuildKit), unavailable when the daemon is unreachable and
--- tool_failed, with the failing step and its output, when the Dockerfile fails.
---@param opts hoist.docker.BuildOptions
---@return hoist.docker.BuildResult
function M.build(opts)
  local fn = "docker.build"
  if type(opts) ~= "table" then cli.fail("invalid_argument", fn .. ": expected an options table {context=, tags=}") end
  local context = cli.opt(fn, opts, "context", "string", true)
  if not cli.exists(context) then
    cli.fail("invalid_argument", ("%s: context %s does not exist"):format(fn, context))
  end
  local tags = cli.opt(fn, opts, "tags", "list") or {}
  for i, t in ipairs(tags) do cli.check_image(fn, ("tags[%d]"):format(i), t) end
  for _, name in ipairs { "file", "target", "platform" } do cli.opt(fn, opts, name, "string") end
  local build_args = cli.opt(fn, opts, "build_args", "map") or {}
  local labels = cli.opt(fn, opts, "labels", "map") or {}
  local cache_from = cli.opt(fn, opts, "cache_from", "list") or {}
  local cache_to = cli.opt(fn, opts, "cache_to", "list") or {}
  local secrets = cli.opt(fn, opts, "secrets", "table") or {}
  local requested = opts.builder or "auto"
  if requested ~= "auto" and requested ~= "buildkit" and requested ~= "classic" then
    cli.fail("invalid_argument", fn .. ": option builder must be \"auto\", \"buildkit\" or \"classic\"")
  end

  local builder, why = choose_builder(requested)
  hoist.log.event("docker.builder", ("docker build uses %s: %s"):format(builder, why), { builder = builder, reason = why })
  local cache_spec = false
  for _, c in ipairs(cache_from) do cache_spec = cache_spec or c:find("^type=") ~= nil end
  if builder == "classic" and (#secrets > 0 or #cache_to > 0 or cache_spec) then
    local what = #secrets > 0 and "secrets" or (#cache_to > 0 and "cache_to" or "cache_from")
    cli.fail("tool_missing", ("%s: %s BuildKit, and %s"):format(fn, what == "secrets" and "build secrets need"
      or (what == "cache_to" and "cache_to needs" or "cache_from with a BuildKit cache spec (type=...) needs"), why),
      { option = what, builder = builder })
  end
  local env_config = cli.opt(fn, opts, "config", "string")
  if builder == "classic" and #cache_from > 0 and not cli.dry_run() then
    -- the classic builder reuses only the layers of images present in the engine: a fresh
    -- runner's engine has none, so the previous build is pulled from the registry first
    local kept = {}
    for _, c in ipairs(cache_from) do
      cli.check_image(fn, "cache_from", c)
      local r = cli.exec({ "pull", "--quiet", c }, { env = env_config and { DOCKER_CONFIG = env_config } or nil,
                                                    timeout = opts.timeout })
      if r.code == 0 then
        kept[#kept + 1] = c
      else
        hoist.log.event("docker.cache_missing", ("build cache %s cannot be pulled (%s): building without it"):format(c,
          cli.reason(r.stderr)), { image = c }, "warn")
      end
    end
    cache_from = kept
  end

  local all_labels = oci_labels(opts)
  for k, v in pairs(labels) do all_labels[k] = v end

  return cli.with_files(function(files)
    -- The classic builder keeps the container of a failed step unless told otherwise.
    local args = { "build", builder == "buildkit" and "--progress=plain" or "--force-rm" }
    if opts.file then args[#args + 1] = "--file"; args[#args + 1] = opts.file end
    for _, t in ipairs(tags) do args[#args + 1] = "--tag"; args[#args + 1] = t end
    add_map(args, "--build-arg", build_args, fn, "build_args")
    add_map(args, "--label", all_labels, fn, "labels")
    if opts.target then args[#args + 1] = "--target"; args[#args + 1] = opts.target end
    if opts.platform then args[#args + 1] = "--platform"; args[#args + 1] = opts.platform end
    for _, c in ipairs(cache_from) do args[#args + 1] = "--cache-from"; args[#args + 1] = c end
    for _, c in ipairs(cache_to) do args[#args + 1] = "--cache-to"; args[#args + 1] = c end
    if opts.pull then args[#args + 1] = "--pull" end
    if opts.no_cache then args[#args + 1] = "--no-cache" end
    for _, f in ipairs(secret_flags(fn, secrets, files)) do args[#args + 1] = f end

    if cli.dry_run() then
      args[#args + 1] = context
      local plan = cli.plan("docker.build", args, { builder = builder, tags = tags })
      plan.id = "dry-run"
      return plan
    end

    local iidfile = files:new()
    args[#args + 1] = "--iidfile"
    args[#args + 1] = iidfile
    args[#args + 1] = context
    hoist.log.event("docker.build", ("building %s with %s"):format(tags[1] or context, builder),
      { context = context, tags = tags, builder = builder })
    -- DOCKER_BUILDKIT=0 only when the classic builder was asked for: where buildx is simply
    -- missing, docker picks the classic builder itself and says how to get BuildKit.
    local env = (builder == "buildkit" or requested == "classic")
        and { DOCKER_BUILDKIT = builder == "buildkit" and "1" or "0" } or nil
    if env_config then
      env = env or {}
      env.DOCKER_CONFIG = env_config
    end
    local r = cli.exec(args, {
      env = env,
      stream = opts.stream ~= false,
      timeout = opts.timeout,
    })
    if r.code ~= 0 then
      local code = cli.classify(r.stderr)
      if code ~= "unavailable" and code ~= "forbidden" then code = "tool_failed" end
      local f = M.parse_failure(r.stdout, r.stderr, builder)
      cli.fail(code, M.failure_message(f), {
        step = f.instruction, position = f.position, step_output = f.output, error = f.error,
        tail = f.tail, builder = builder, status = r.code, argv = cli.scrub_argv(r.argv),
      })
    end
    local id = (cli.read_file(iidfile) or ""):match("sha256:%x+")
    if not id then cli.fail("internal", fn .. ": docker build succeeded but wrote no image id", { tail = cli.tail(cli.lines(r.stderr), 20) }) end
    hoist.log.event("docker.built", ("built %s (%s)"):format(id:sub(1, 19), tags[1] or "untagged"),
      { id = id, tags = tags, builder = builder, duration = r.duration })
    return { id = id, tags = tags, builder = builder, duration = r.duration }
  end)
end

--- Forgets which builder this docker has (tests).
--- Internal: for tests of the BuildKit detection.
function M.reset_detection() buildx_by_binary = {} end

return M
