--- hoist.docker.cli: how hoist.docker calls the docker CLI: one place for running it, mapping
--- its failures to error codes, dry-run plans and private temp files. Internal to hoist.docker.
local util = require "hoist.util"

local M = {}

--- Test hook: a function(argv_spec) -> {code, stdout, stderr, ...} used instead of hoist.exec.
---@type fun(spec: table): table|nil
M.runner = nil

-- Messages and details quote docker's and containers' output, which may echo a secret:
-- util.fail scrubs them.
local fail = util.fail
M.fail = fail

--- True when path names an existing file or folder.
function M.exists(path) return type(path) == "string" and hoist.fs.exists(path) end

--- The docker program: $HOIST_DOCKER_BIN, else "docker" from PATH.
---@return string
function M.binary()
  local b = os.getenv("HOIST_DOCKER_BIN")
  return (b and b ~= "") and b or "docker"
end

M.dry_run = util.dry_run

--- Lines of text without ANSI colour codes (the classic builder colours a step's stderr).
---@param text string?
---@return string[]
function M.lines(text)
  local out = {}
  text = (text or ""):gsub("\27%[[%d;]*[A-Za-z]", "")
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    line = line:gsub("\r+$", ""):gsub("^.*\r", "") -- progress redraws keep their last state
    out[#out + 1] = line
  end
  while out[#out] == "" do out[#out] = nil end
  return out
end

--- The last n lines of a list.
function M.tail(list, n)
  local out = {}
  for i = math.max(1, #list - n + 1), #list do out[#out + 1] = list[i] end
  return out
end

-- Docker's words -> error code. Order matters: "unauthorized" beats "not found" in
-- "pull access denied ... may require 'docker login'". A registry name that does not resolve
-- ("lookup r on 127.0.0.53:53: no such host") is the network's failure, which a retry or a
-- fixed resolver may cure: unavailable, not not_found (the image may well exist).
local classes = {
  { "unavailable", { "cannot connect to the docker daemon", "error during connect",
                     "is the docker daemon running", "connection refused", "no such host",
                     "temporary failure in name resolution", "server misbehaving" } },
  { "forbidden", { "permission denied while trying to connect" } },
  { "unauthorized", { "unauthorized", "incorrect username or password", "authentication required",
                      "no basic auth credentials", "invalid username/password" } },
  { "not_found", { "no such container", "no such image", "no such object", "does not exist locally",
                   "not found: manifest unknown", "manifest unknown", "repository does not exist",
                   "pull access denied", "reference does not exist" } },
  { "forbidden", { "requested access to the resource is denied", "denied:" } },
  { "conflict", { "is already in use", "conflict:", "port is already allocated",
                  "address already in use", "you cannot remove a running container",
                  "is not running" } },
  { "throttled", { "toomanyrequests", "too many requests" } },
  -- docker refused its own command line (exit code 125) before asking the daemon
  { "invalid_argument", { "invalid reference format", "invalid containerport", "invalid hostport",
                          "invalid argument", "unknown flag:", "invalid proto" } },
}

--- The error code for docker's stderr.
---@param stderr string
---@return string
function M.classify(stderr)
  local low = (stderr or ""):lower()
  for _, c in ipairs(classes) do
    for _, needle in ipairs(c[2]) do
      if low:find(needle, 1, true) then return c[1] end
    end
  end
  return "tool_failed"
end

-- Lines that only point at help: docker ends a refused command line with them, after the
-- line that says what is wrong ("docker: invalid reference format ...").
local HINTS = { "^Run 'docker .*%-%-help' for more information", "^See 'docker .*%-%-help'", "^Usage:%s+docker " }

local function is_hint(line)
  for _, p in ipairs(HINTS) do
    if line:match(p) then return true end
  end
  return false
end

-- The line that says what went wrong: the last "Error..." line (docker's own "docker: "
-- prefix dropped), else the last line that is neither a warning nor a pointer to --help.
function M.reason(stderr)
  local lines = {}
  for _, l in ipairs(M.lines(stderr)) do
    l = l:gsub("^%s+", ""):gsub("^docker: ", "")
    if l ~= "" and not is_hint(l) then lines[#lines + 1] = l end
  end
  for i = #lines, 1, -1 do
    if lines[i]:match("^[Ee][Rr][Rr][Oo][Rr]") then return lines[i] end
  end
  for i = #lines, 1, -1 do
    local l = lines[i]
    if not l:match("^WARNING") and not l:match("^DEPRECATED") and not l:match("^https?://") then return l end
  end
  return "no error message"
end

--- Copies argv with registered secrets masked (for plans and error details).
function M.scrub_argv(argv)
  local out = {}
  for i, a in ipairs(argv) do out[i] = hoist.scrub(a) end
  return out
end

-- Secrets never go on a command line: they would show in `ps`, in docker's history and in
-- our own plans. Refuse rather than mask.
local function refuse_secrets(argv, what)
  for i, a in ipairs(argv) do
    if hoist.scrub(a) ~= a then
      fail("invalid_argument", ("docker %s: argument %d holds a registered secret; secrets never go on a "
        .. "command line (use env = {...} for docker.run, secrets = {...} for docker.build)"):format(what, i - 1),
        { argument = i - 1 })
    end
  end
end

--- Runs `docker <args...>`; a non-zero exit is returned as data. `spec` carries hoist.exec's
--- options (stdin, env, timeout, stream, cwd).
---@param args string[]
---@param spec? table
---@return {code: integer, stdout: string, stderr: string, timed_out?: boolean, duration?: number, argv: string[]}
function M.exec(args, spec)
  local argv = { M.binary() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  refuse_secrets(argv, args[1] or "")
  local call = {}
  for i, a in ipairs(argv) do call[i] = a end
  for k, v in pairs(spec or {}) do call[k] = v end
  call.check = false
  local run = M.runner or hoist.exec
  local ok, r = pcall(run, call)
  if not ok then
    if hoist.is_error(r, "tool_missing") then
      fail("tool_missing", ("the docker CLI (%s) is not installed or not on PATH; install docker.io or set "
        .. "HOIST_DOCKER_BIN"):format(argv[1]), { program = argv[1] })
    end
    error(r, 0)
  end
  r.argv = argv
  if r.timed_out then
    fail("timeout", ("docker %s timed out after %gs"):format(args[1] or "", spec and spec.timeout or 0),
      { argv = M.scrub_argv(argv), stderr = M.tail(M.lines(r.stderr), 20) })
  end
  return r
end

--- Raises the error a failed docker call means, with docker's own words.
---@param what string e.g. "push 127.0.0.1:5000/app:1"
---@param r table exec result
---@param details? table more evidence
---@param code? string the code to use instead of classifying stderr
function M.raise(what, r, details, code)
  details = details or {}
  details.status = r.code
  details.stderr = details.stderr or M.tail(M.lines(r.stderr), 20)
  details.argv = M.scrub_argv(r.argv or {})
  fail(code or M.classify(r.stderr), ("docker %s: %s"):format(what, M.reason(r.stderr)), details)
end

--- Runs docker and raises on a non-zero exit.
function M.check(what, args, spec)
  local r = M.exec(args, spec)
  if r.code ~= 0 then M.raise(what, r) end
  return r
end

--- In dry-run mode: emits a "plan" event with the command line and returns the plan.
---@param action string e.g. "docker.build"
---@param args string[] docker's arguments
---@param fields? table more facts for the event and the result
---@return {planned: true, action: string, argv: string[]}
function M.plan(action, args, fields)
  local argv = { M.binary() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  refuse_secrets(argv, args[1] or "")
  local result = { planned = true, action = action, argv = M.scrub_argv(argv) }
  for k, v in pairs(fields or {}) do result[k] = v end
  util.plan(result)
  return result
end

--- Creates an empty private file (mode 0600, mkstemp) and returns its path.
---@return string
function M.private_file(content)
  local path = os.tmpname()
  if content then
    local f = assert(io.open(path, "w")) -- truncating keeps mkstemp's 0600 mode
    f:write(content)
    f:close()
  end
  return path
end

--- Reads a whole file, nil when absent.
function M.read_file(path) return hoist.fs.read_file(path, { missing_ok = true }) end

--- Runs fn(files) where files:new(content) makes private files; removes them all afterwards,
--- whether fn returns or raises.
function M.with_files(fn)
  local paths = {}
  local files = { new = function(_, content)
    local p = M.private_file(content)
    paths[#paths + 1] = p
    return p
  end }
  local results = { pcall(fn, files) }
  for _, p in ipairs(paths) do os.remove(p) end
  if not results[1] then error(results[2], 0) end
  return unpack(results, 2, table.maxn(results))
end

--- Checks one option (util.check_opt), plus docker's shapes: "list" (a string becomes {s};
--- items are strings), "map" (names to scalars), and no empty strings.
function M.opt(fn, opts, name, kind, required)
  local v = opts[name]
  if kind == "list" and type(v) == "string" then return { v } end
  if not fn:match("^hoist%.") then fn = "hoist." .. fn end
  v = util.check_opt(fn, name, v, { type = (kind == "list" or kind == "map") and "table" or kind, required = required })
  if v == nil then return nil end
  if kind == "list" then
    for i, item in ipairs(v) do
      if type(item) ~= "string" then
        fail("invalid_argument", ("%s: %s[%d] must be a string, got %s"):format(fn, name, i, type(item)))
      end
    end
  elseif kind == "map" then
    for k, item in pairs(v) do
      local t = type(item)
      if type(k) ~= "string" or not (t == "string" or t == "number" or t == "boolean") then
        fail("invalid_argument", ("%s: %s must map names to strings (bad entry %s)"):format(fn, name, tostring(k)))
      end
    end
  elseif kind == "string" and v == "" then
    fail("invalid_argument", ("%s: option %s must not be empty"):format(fn, name))
  end
  return v
end

--- Checks an image reference with Docker's grammar (hoist.image) before anything runs;
--- returns it unchanged (docker normalises it itself).
function M.check_image(fn, name, ref)
  if type(ref) ~= "string" then
    fail("invalid_argument", ("%s: %s %q is not a valid image reference (expected a string such as registry/app:tag)")
      :format(fn, name, tostring(ref)))
  end
  local ok, err = pcall(hoist.image.parse, ref)
  if not ok then
    fail("invalid_argument", ("%s: %s %q is not a valid image reference: %s"):format(fn, name, ref, err.message or tostring(err)),
      { reference = ref })
  end
  return ref
end

return M
