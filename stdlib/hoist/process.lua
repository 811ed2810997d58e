--- hoist.process: run programs (argv, never a shell), find them on PATH, read the
--- environment. Reachable as hoist.exec, hoist.which and hoist.env.
---
--- A non-zero exit is data (`result.code`) unless `check = true`. Errors are for programs
--- that cannot be started (tool_missing), bad options (invalid_argument) and cancellation.
local native = require "hoist.native.process"
local core = require "hoist.native.core"
local log = require "hoist.log"
local util = require "hoist.util"

local M = {}

local function invalid(message) util.fail("invalid_argument", "hoist.exec: " .. message) end

---@class hoist.ExecOptions
---@field [integer] string the program and its arguments (numbers are converted)
---@field env? table<string, string> added to the inherited environment
---@field clear_env? boolean the child sees only `env` (PATH included: give one)
---@field cwd? string working directory of the child
---@field stdin? string written to the child's stdin, then closed (default: /dev/null)
---@field timeout? number seconds; then SIGTERM to its process group, SIGKILL 2 s later
---@field check? boolean raise tool_failed on a non-zero exit (timeout on a timeout)
---@field stream? boolean send each output line to the log as it comes ("exec.line")

---@class hoist.ExecResult
---@field code integer exit status; 128+signal when killed by a signal; 124 on timeout
---@field signal integer the signal that ended it, 0 when it exited
---@field stdout string
---@field stderr string
---@field duration number seconds
---@field timed_out boolean
---@field pid integer

local known = {
  env = "table", clear_env = "boolean", cwd = "string", stdin = "string",
  timeout = "number", check = "boolean", stream = "boolean",
}

-- Returns argv after checking every option; raises invalid_argument naming the bad one.
local function validate(opts)
  if type(opts) ~= "table" then
    invalid("expected an options table such as {'ls', '-l'}, got " .. type(opts))
  end
  local n = #opts
  for k, v in pairs(opts) do
    if type(k) == "number" then
      if k ~= math.floor(k) or k < 1 or k > n then
        invalid(("argument list has a hole or a bad index [%s]"):format(tostring(k)))
      end
    elseif known[k] == nil then
      invalid(("unknown option '%s'"):format(tostring(k)))
    else
      util.check_opt("hoist.exec", k, v, known[k])
    end
  end
  if n == 0 then invalid("argv is empty: give the program first, as in hoist.exec{'ls', '-l'}") end
  local argv = {}
  for i = 1, n do
    local a = opts[i]
    if type(a) == "number" then a = tostring(a) end
    if a == nil then
      invalid(("argument %d is nil (a hole in the argument list)"):format(i))
    elseif type(a) ~= "string" then
      invalid(("argument %d must be a string, got %s"):format(i, type(opts[i])))
    end
    argv[i] = a
  end
  if argv[1] == "" then invalid("the program (argument 1) is an empty string") end
  if opts.timeout and opts.timeout < 0 then invalid("option 'timeout' must be >= 0") end
  if opts.env then
    for k, v in pairs(opts.env) do
      if type(k) ~= "string" or k == "" or k:find("=", 1, true) then
        invalid(("env key %s must be a non-empty string without '='"):format(tostring(k)))
      end
      if type(v) ~= "string" and type(v) ~= "number" then
        invalid(("env '%s' must be a string, got %s"):format(k, type(v)))
      end
    end
  end
  return argv
end

local function basename(path) return path:match("([^/]+)/*$") or path end

-- The last `n` lines of text (and whether some were left out).
local function last_lines(text, n)
  local lines = {}
  for line in text:gmatch("[^\n]+") do
    lines[#lines + 1] = line
    if #lines > n then table.remove(lines, 1) end
  end
  return table.concat(lines, "\n")
end

local shell_quote = util.shell_quote

local function failure(program, argv, opts, r)
  local stderr = core.scrub(r.stderr)
  local what
  if r.timed_out then
    what = ("%s timed out after %gs"):format(program, opts.timeout)
  elseif r.signal ~= 0 then
    what = ("%s was killed by signal %d (code %d)"):format(program, r.signal, r.code)
  else
    what = ("%s exited with code %d"):format(program, r.code)
  end
  local tail = last_lines(stderr, 10)
  local scrubbed_argv = {}
  for i, a in ipairs(argv) do scrubbed_argv[i] = core.scrub(a) end
  local details = {
    program = program, argv = scrubbed_argv, code = r.code, signal = r.signal,
    timed_out = r.timed_out, duration = r.duration,
    stderr = stderr:sub(-8192), -- the tail: enough to see why, bounded for logs
  }
  if tail == "" then -- some tools report on stdout
    tail = last_lines(core.scrub(r.stdout), 10)
    details.stdout = core.scrub(r.stdout):sub(-8192)
  end
  return core.new_error {
    code = r.timed_out and "timeout" or "tool_failed",
    message = tail ~= "" and (what .. ":\n" .. tail) or what,
    details = details,
  }
end

--- Runs a program and waits for it (other tasks go on meanwhile). argv never passes through
--- a shell; the program is looked up on PATH (the child's PATH when `env` sets one).
---
---     local r = hoist.exec{ "git", "rev-parse", "HEAD", check = true }
---     local sha = r.stdout:gsub("%s+$", "")
---@param opts hoist.ExecOptions
---@return hoist.ExecResult
function M.exec(opts)
  local argv = validate(opts)
  local program = basename(argv[1])
  local quoted, env_keys = {}, util.sorted_keys(opts.env)
  -- scrub, then quote: quoting first would split a secret holding ' out of its mask
  for i, a in ipairs(argv) do quoted[i] = shell_quote(core.scrub(a)) end
  -- argv and cwd are scrubbed by the event bus; env values are never logged, only names
  log.event("exec.start", "exec " .. table.concat(quoted, " "),
    { program = program, argv = argv, cwd = opts.cwd, env = env_keys, timeout = opts.timeout }, "debug")
  local ok, r = native.exec {
    argv = argv, env = opts.env, clear_env = opts.clear_env, cwd = opts.cwd,
    stdin = opts.stdin, timeout = opts.timeout, stream = opts.stream, program = program,
  }
  if not ok then
    log.event("exec.end", program .. ": " .. tostring(r.message),
      { program = program, error = r.code }, "debug")
    error(r, 0)
  end
  log.event("exec.end", ("%s exited with code %d in %.2fs"):format(program, r.code, r.duration),
    { program = program, code = r.code, signal = r.signal, duration = r.duration,
      timed_out = r.timed_out }, "debug")
  if opts.check and r.code ~= 0 then error(failure(program, argv, opts, r), 0) end
  return r
end

-- `name` when it is a non-empty string; else invalid_argument ("hoist.which: expected a program name").
local function name_arg(fname, what, name)
  if type(name) ~= "string" or name == "" then
    util.fail("invalid_argument", ("%s: expected a %s name, got %s"):format(fname, what, type(name)))
  end
  return name
end

--- Full path of a program on PATH, or nil.
---@param name string
---@return string|nil
function M.which(name) return native.which(name_arg("hoist.which", "program", name)) end

--- An environment variable of the engine's process, or nil.
---@param name string
---@return string|nil
function M.env(name) return os.getenv(name_arg("hoist.env", "variable", name)) end

return M
