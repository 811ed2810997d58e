--- hoist.pipeline.actions: named rollback actions and running compensations.
---
--- A compensation is an action NAME plus JSON arguments, never a closure, so that a later
--- process (`hoist rollback <run-id>`) can run it from the journal. Each action remembers
--- where it was defined (a module to `require`, or a file to run again) and the journal
--- keeps that origin next to the action's name.
--- Internal to hoist.pipeline (docs/pipeline.md is its API).
local fs = require "hoist.fs"

local M = {}

---@class hoist.ActionOrigin
---@field module? string module that defines the action ("hoist.docker", "scripts.container.v1")
---@field file? string absolute path of the file that defines it

---@type table<string, {fn: function, origin: hoist.ActionOrigin}>
local registry = {}

-- Where the chunk at `level` comes from. Embedded chunks are named "@stdlib/hoist/x.lua" or
-- "@scripts/name/v1.lua"; the same files loaded from disk (HOIST_LUA_PATH) end the same way.
local function origin_of(level)
  local info = debug.getinfo(level, "S")
  local src = info and info.source or ""
  local origin = {}
  local mod = src:match("stdlib/(hoist/[%w_/%-]+)%.lua$")
  if mod then
    origin.module = mod:gsub("/init$", ""):gsub("/", ".")
    return origin
  end
  local name, major = src:match("scripts/([%w_%-]+)/(v%d+)%.lua$")
  if name then origin.module = ("scripts.%s.%s"):format(name, major) end
  if src:sub(1, 1) == "@" then
    local ok, abs = pcall(fs.realpath, src:sub(2))
    if ok then origin.file = abs end
  end
  return origin
end

local function same_origin(a, b)
  return a.module == b.module and a.file == b.file
end

--- Registers a named rollback action. `fn(args, rctx)` must be idempotent. With `opts.args`
--- (an option spec, as hoist.util.check_opts takes), its arguments are checked when a run
--- registers the compensation (a bad one fails the deploy before it changes anything) and
--- again when it runs (a journal from another version, edited or damaged, is refused naming
--- the argument, not half run).
---@param name string dotted name, e.g. "docker.restore"
---@param fn fun(args: table, rctx: hoist.RollbackContext)
---@param opts? {module?: string, args?: table<string, string|hoist.util.OptSpec>}
---@param depth? integer frames between the definer and this call (wrappers)
function M.define(name, fn, opts, depth)
  if type(name) ~= "string" or not name:match("^[%w_%-]+[%w_%-%.:]*$") then
    hoist.error { code = "invalid_argument", message = ("pipeline.action: bad action name %q"):format(tostring(name)) }
  end
  if type(fn) ~= "function" then
    hoist.error { code = "invalid_argument", message = ("pipeline.action %q: expected a function"):format(name) }
  end
  if opts and opts.args ~= nil and type(opts.args) ~= "table" then
    hoist.error { code = "invalid_argument", message = ("pipeline.action %q: args must be an option spec table"):format(name) }
  end
  local origin = origin_of(3 + (depth or 0))
  if opts and opts.module then origin = { module = opts.module } end
  local old = registry[name]
  if old and not same_origin(old.origin, origin) and old.fn ~= fn then
    hoist.error {
      code = "conflict",
      message = ("rollback action %q is already defined by %s"):format(name, old.origin.module or old.origin.file or "another chunk"),
    }
  end
  registry[name] = { fn = fn, origin = origin, args = opts and opts.args or nil }
end

--- The registered action, or nil.
---@param name string
---@return {fn: function, origin: hoist.ActionOrigin, args?: table}?
function M.get(name) return registry[name] end

--- `args` checked against the spec action `name` was registered with (hoist.util.check_opts:
--- unknown, missing or mistyped arguments raise invalid_argument naming them), with its
--- defaults filled in; `args` as they are when it has no spec.
---@param name string
---@param args table
---@return table
function M.check_args(name, args)
  local a = registry[name]
  if not (a and a.args) then return args end
  return require("hoist.util").check_opts("rollback action " .. name, args, a.args)
end

--- Names of the registered actions, sorted.
---@return string[]
function M.names() return require("hoist.util").sorted_keys(registry) end

--- Makes sure the action of a journal entry is defined in this process: requires its
--- module or runs its file again. Returns nil and the reason when it cannot.
---@param entry {action: string, module?: string, file?: string}
---@return boolean ok, string? why
function M.load(entry)
  if registry[entry.action] then return true end
  local tried = {}
  if entry.module then
    local ok, err = pcall(require, entry.module)
    if not ok then tried[#tried + 1] = ("require %q failed: %s"):format(entry.module, tostring(err)) end
    if registry[entry.action] then return true end
  end
  if entry.file then
    local chunk, err = loadfile(entry.file)
    if chunk then
      local ok, run_err = pcall(chunk, {})
      if not ok then tried[#tried + 1] = ("running %s failed: %s"):format(entry.file, tostring(run_err)) end
    else
      tried[#tried + 1] = ("cannot load %s: %s"):format(entry.file, tostring(err))
    end
    if registry[entry.action] then return true end
  end
  if #tried == 0 then
    tried[1] = ("%s does not define it"):format(entry.module or entry.file or "no recorded module")
  end
  return false, ("rollback action %q is not defined (%s)"):format(entry.action, table.concat(tried, "; "))
end

-- Turns anything raised into a hoist error that keeps a traceback and a file:line.
local function as_error(e)
  if type(e) == "table" and hoist.is_error(e) then
    if not e.traceback then e.traceback = debug.traceback("", 2) end
    return e
  end
  local text = tostring(e)
  local where, msg = text:match("^(.-%.lua:%d+): (.*)$")
  local err = hoist.new_error { code = "internal", message = msg or text }
  if where then err.where = where end
  err.traceback = debug.traceback("", 2)
  return err
end
M.as_error = as_error

---@class hoist.RollbackContext
---@field run {id: string, dir: string}
---@field stage? string the stage that registered the compensation
---@field log table debug/info/warn/error(message, fields?)

---@class hoist.Compensation
---@field id integer
---@field stage? string
---@field action string
---@field module? string
---@field file? string
---@field args table

--- Runs the compensations in reverse order, once each, appending compensation.start/end to
--- the journal. A failing one does not stop the others. Returns the done and left lists.
---@param list hoist.Compensation[] in registration order, only those still pending
---@param opts {journal: table, run: {id: string, dir: string}}
---@return hoist.Compensation[] done, {id: integer, action: string, stage?: string, error: table}[] left
function M.compensate(list, opts)
  local done, left = {}, {}
  for i = #list, 1, -1 do
    local c = list[i]
    local label = ("%s (stage %s)"):format(c.action, c.stage or "?")
    opts.journal:append { kind = "compensation.start", id = c.id, action = c.action, stage = c.stage }
    hoist.log.event("compensation.start", "undo " .. label, { id = c.id, action = c.action, stage = c.stage })
    local started = hoist.now()
    local ok, why = M.load(c)
    local err
    if ok then
      local rctx = {
        run = opts.run,
        stage = c.stage,
        log = {
          debug = function(m, f) hoist.log.debug(m, f) end,
          info = function(m, f) hoist.log.info(m, f) end,
          warn = function(m, f) hoist.log.warn(m, f) end,
          error = function(m, f) hoist.log.error(m, f) end,
        },
      }
      local fn = registry[c.action].fn
      ok, err = xpcall(function() return fn(M.check_args(c.action, c.args or {}), rctx) end, as_error)
    else
      err = hoist.new_error { code = "not_found", message = why }
    end
    local took = hoist.now() - started
    if ok then
      done[#done + 1] = c
      opts.journal:append { kind = "compensation.end", id = c.id, action = c.action, status = "succeeded", duration = took }
      hoist.log.event("compensation.end", ("undone %s (%.2fs)"):format(label, took),
        { id = c.id, action = c.action, stage = c.stage, status = "succeeded", duration = took })
    else
      local e = { code = err.code, message = err.message, where = err.where }
      left[#left + 1] = { id = c.id, action = c.action, stage = c.stage, error = e }
      opts.journal:append { kind = "compensation.end", id = c.id, action = c.action, status = "failed", duration = took, error = e }
      hoist.log.event("compensation.end", ("could not undo %s: %s"):format(label, tostring(err)),
        { id = c.id, action = c.action, stage = c.stage, status = "failed", duration = took, error = e }, "error")
    end
  end
  return done, left
end

return M
