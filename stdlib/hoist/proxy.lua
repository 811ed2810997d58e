--- hoist.proxy: the Lua face of `hoist proxy`, the TCP front that keeps a service port
--- answering while a deploy swaps the container behind it (engine/local/proxy.cpp).
---
--- The proxy is its own detached process: it must outlive the hoist run that started it,
--- even a SIGKILLed one. This module starts, switches, stops and reads it by running the
--- hoist executable; a state file (`<state_dir>/proxy/<name>.json`) is how it is found again.
--- Mutating calls honour dry-run (a plan step, nothing runs); `status` always runs.
local M = {}

local CODES = {
  timeout = true, cancelled = true, not_found = true, conflict = true, unauthorized = true, forbidden = true,
  throttled = true, unavailable = true, invalid_argument = true, policy_violation = true, rollout_failed = true,
  tool_missing = true, tool_failed = true, internal = true,
}

local util = require "hoist.util"
local fail = util.fail

local dry_run = util.dry_run

-- The plan step of `hoist proxy <args>`: what a dry run records instead of running it.
local function plan(action, args)
  local argv = { M.binary(), "proxy" }
  for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
  util.plan { action = action, argv = argv }
  return { planned = true, action = action, argv = argv }
end

local function need(fn, opts, field)
  local v = type(opts) == "table" and opts[field] or nil
  if type(v) ~= "string" or v == "" then
    fail("invalid_argument", ("%s: %s must be a non-empty string, got %s"):format(fn, field, tostring(v)))
  end
  return v
end

--- The hoist executable: $HOIST_BIN (the hoist command sets it to itself), else `hoist` on PATH.
--- Internal: how hoist.proxy finds its helper binary.
---@return string
function M.binary()
  local b = os.getenv("HOIST_BIN")
  if b and b ~= "" then return b end
  local found = hoist.which("hoist")
  if found then return found end
  fail("tool_missing", "hoist.proxy: the hoist executable is unknown: set HOIST_BIN=/path/to/hoist or put hoist on PATH")
end

--- The state file of a service's proxy: `<state_dir>/proxy/<name>.json`, made absolute so a
--- later process started elsewhere (`hoist rollback`) finds the same file.
---@param name string service name
---@param state_dir? string default hoist.run.state_dir (".hoist")
---@return string
function M.state_file(name, state_dir)
  if type(name) ~= "string" or not name:match("^[%w][%w_.%-]*$") then
    fail("invalid_argument", ("proxy.state_file: bad service name %q"):format(tostring(name)))
  end
  local dir = state_dir or hoist.run.state_dir or ".hoist"
  local path = dir .. "/proxy/" .. name .. ".json"
  if path:sub(1, 1) == "/" then return path end
  return hoist.fs.absolute(path)
end

-- Runs `hoist proxy ARGS...`; maps "hoist proxy: <code>: <message>" to a hoist error.
local function run(what, args, timeout)
  local argv = { M.binary(), "proxy" }
  for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
  argv.timeout = timeout or 30
  local r = hoist.exec(argv)
  if r.code == 0 then return r end
  local code, message = (r.stderr or ""):match("hoist proxy: ([%w_]+): ([^\n]*)")
  if not code or not CODES[code] then
    code = r.timed_out and "timeout" or "tool_failed"
    message = (r.stderr or ""):match("([^\n]+)\n*$") or ("exit code " .. r.code)
  end
  argv.timeout = nil
  fail(code, ("%s: %s"):format(what, message), { argv = argv, status = r.code, stderr = r.stderr })
end

local function decode(text, what)
  local ok, v = pcall(hoist.json.decode, text)
  if not ok or type(v) ~= "table" then fail("internal", what .. ": unexpected output: " .. tostring(text)) end
  return v
end

---@class hoist.proxy.State
---@field running boolean whether the proxy process is alive
---@field pid? integer
---@field name? string
---@field listen? string "127.0.0.1:8080"
---@field upstream? string the upstream asked for
---@field applied? string the upstream new connections go to
---@field log? string its log file
---@field state_file string

--- The state of a proxy; `{running = false}` when none runs. Always runs (also in dry-run).
---@param opts {state: string}
---@return hoist.proxy.State
function M.status(opts)
  local state = need("proxy.status", opts, "state")
  local argv = { M.binary(), "proxy", "--status", "--state", state, timeout = 30 }
  local r = hoist.exec(argv)
  if r.code ~= 0 and r.code ~= 1 then
    fail("tool_failed", "proxy.status: " .. ((r.stderr or ""):match("([^\n]+)") or ("exit code " .. r.code)),
      { status = r.code, stderr = r.stderr })
  end
  return decode(r.stdout, "proxy.status")
end

--- Starts a detached proxy listening on `listen` and sending connections to `upstream`;
--- returns once it listens. Raises conflict when the port is taken or a proxy already runs
--- for this state file.
---@param opts {name: string, listen: string, upstream: string, state: string}
---@return hoist.proxy.State
function M.start(opts)
  local fn = "proxy.start"
  local args = { "--listen", need(fn, opts, "listen"), "--upstream", need(fn, opts, "upstream"),
                 "--state", need(fn, opts, "state"), "--name", need(fn, opts, "name"), "--detach" }
  if dry_run() then return plan("proxy.start", args) end
  local r = run(("cannot start the proxy for %s on %s"):format(opts.name, opts.listen), args)
  local state = decode(r.stdout, fn)
  hoist.log.event("proxy.started", ("proxy for %s listens on %s -> %s (pid %s)"):format(opts.name, opts.listen,
    opts.upstream, tostring(state.pid)), { name = opts.name, listen = opts.listen, upstream = opts.upstream, pid = state.pid })
  return state
end

--- Switches the running proxy to `upstream` and waits until it confirms: from then on new
--- connections go there, open ones finish where they are.
---@param opts {state: string, upstream: string, timeout?: number}
---@return hoist.proxy.State
function M.switch(opts)
  local fn = "proxy.switch"
  local timeout = opts and opts.timeout or 10
  local args = { "--state", need(fn, opts, "state"), "--switch", need(fn, opts, "upstream"), "--timeout", timeout }
  if dry_run() then return plan("proxy.switch", args) end
  local r = run("cannot switch the proxy to " .. opts.upstream, args, timeout + 10)
  local state = decode(r.stdout, fn)
  hoist.log.event("proxy.switched", ("proxy %s now sends new connections to %s"):format(tostring(state.listen),
    opts.upstream), { listen = state.listen, upstream = opts.upstream })
  return state
end

--- Stops the proxy (open connections may finish, up to its drain timeout). Idempotent.
---@param opts {state: string, timeout?: number}
---@return {stopped: boolean, planned?: boolean}
function M.stop(opts)
  local fn = "proxy.stop"
  local timeout = opts and opts.timeout or 15
  local args = { "--state", need(fn, opts, "state"), "--stop", "--timeout", timeout }
  if dry_run() then return plan("proxy.stop", args) end
  local r = run("cannot stop the proxy of " .. opts.state, args, timeout + 10)
  local stopped = r.stdout:match("^stopped") ~= nil
  if stopped then hoist.log.event("proxy.stopped", "proxy stopped: " .. opts.state, { state = opts.state }) end
  return { stopped = stopped }
end

return M
