--- hoist.util: the helpers every stdlib module shares, written once: `await` (the Lua half of
--- a waiting native), `try` (a pcall that never catches a cancellation), `fail` (raise a
--- structured error), `check_opts` (one option checker) and `dry_run` (the run's one dry-run
--- flag). Reference: docs/core.md, "Helpers for modules".
local core = require "hoist.native.core"

local M = {}

--- Waiting natives return `ok, ...`: returns the rest when ok, raises the error value when not.
---@return any ...
function M.await(ok, ...)
  if ok then return ... end
  error((...), 0)
end

--- pcall for code that goes on after an error: returns `true, ...` or `false, err`, except
--- that a cancellation (`cancelled`) is raised again, never returned. A pcall that goes on
--- after a cancellation loses it: the run does the next step instead of rolling back, and a
--- loop whose wait now fails at once spins without ever yielding.
---@param fn function
---@return boolean ok
---@return any ...
function M.try(fn, ...)
  return (function(ok, ...)
    if not ok and core.is_error((...)) and (...).code == "cancelled" then error((...), 0) end
    return ok, ...
  end)(pcall(fn, ...))
end

--- The claims of a JWT (its payload, decoded; the signature is not checked), nil when `s` is
--- none: what a token says about itself (its expiry, its principal), never a proof of it.
---@param s any
---@return table|nil
function M.jwt_claims(s)
  local payload = type(s) == "string" and s:match("^eyJ[%w_-]+%.([%w_-]+)%.[%w_-]*$")
  if not payload then return nil end
  local std = payload:gsub("-", "+"):gsub("_", "/")
  std = std .. ("="):rep((4 - #std % 4) % 4)
  local ok, text = pcall(core.base64_decode, std, "a JWT's payload")
  if not ok then return nil end
  local decoded, claims = pcall(hoist.json.decode, text)
  return decoded and type(claims) == "table" and claims or nil
end

local function scrub_deep(v, depth)
  if type(v) == "string" then return core.scrub(v) end
  if type(v) ~= "table" or depth > 20 then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = scrub_deep(x, depth + 1) end
  return out
end

--- Raises a structured error `{code, message, details}`. The message and details often quote
--- a tool's or a remote's own words, which may echo a secret: both are scrubbed here, once
--- for every caller.
---@param code string one of the codes of hoist.Error
---@param message string
---@param details? table
---@param retryable? boolean default from the code
function M.fail(code, message, details, retryable)
  error(core.new_error { code = code, message = core.scrub(tostring(message)),
                         details = details and scrub_deep(details, 0), retryable = retryable }, 0)
end

local function type_name(v)
  local t = type(v)
  if t == "number" and v == math.floor(v) then return "number", "integer" end
  return t
end

local function fits(want, v)
  local t, sub = type_name(v)
  for alt in want:gmatch("[^|]+") do
    if alt == t or alt == sub or alt == "any" then return true end
  end
  return false
end

local function article(word) return (word:match("^[aeiou]") and "an " or "a ") .. word end

local function show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return tostring(v)
end

---@class hoist.util.OptSpec
---@field type string "string", "number", "integer", "boolean", "table", "function", "any"; alternatives joined by "|"
---@field required? boolean
---@field default? any filled in when the option is absent (tables are copied shallowly)
---@field allowed? any[] the accepted values
---@field pattern? string Lua pattern a string value must match whole (anchored at both ends)
---@field hint? string what `pattern` means in words, for the message ("a path starting with '/'")
---@field min? number smallest number accepted
---@field max? number largest number accepted
---@field integer? boolean a number must be whole
---@field max_length? integer longest string accepted, in bytes
---@field secret? boolean a string value is registered with hoist.secret

-- A Lua pattern that must match the whole value.
local function anchored(pattern)
  if pattern:sub(1, 1) ~= "^" then pattern = "^" .. pattern end
  if pattern:sub(-1) ~= "$" or pattern:sub(-2) == "%$" then pattern = pattern .. "$" end
  return pattern
end

--- The value rules of a spec besides its type: `allowed`, `pattern` (with `hint`), `min`,
--- `max`, `integer`, `max_length`. Returns the problem as the end of a sentence ("must be from 1 to 65535,
--- got 0"), or nil when `v` keeps them. The one place these rules live: option checks
--- (check_opt) and pipeline parameters (hoist.pipeline) both call it.
---@param s {allowed?: any[], pattern?: string, hint?: string, min?: number, max?: number, integer?: boolean, max_length?: integer, secret?: boolean}
---@param v any
---@return string?
function M.value_problem(s, v)
  local shown = s.secret and "(secret value)" or show(v)
  if s.allowed then
    for _, a in ipairs(s.allowed) do if a == v then return nil end end
    local names = {}
    for i, a in ipairs(s.allowed) do names[i] = tostring(a) end
    return ("must be one of %s, got %s"):format(table.concat(names, ", "), shown)
  end
  if s.max_length and type(v) == "string" and #v > s.max_length then
    return ("must be at most %d characters, got %d"):format(s.max_length, #v)
  end
  if s.pattern and type(v) == "string" and not v:find(anchored(s.pattern)) then
    if s.hint then return ("must be %s, got %s"):format(s.hint, shown) end
    return ("must match the pattern %s, got %s"):format(s.pattern, shown)
  end
  if type(v) == "number" then
    if s.integer and v ~= math.floor(v) then return ("must be a whole number, got %s"):format(shown) end
    local lo, hi = s.min, s.max
    if (lo or hi) and ((lo and v < lo) or (hi and v > hi) or v ~= v) then
      if lo and hi then return ("must be from %s to %s, got %s"):format(show(lo), show(hi), shown) end
      if lo then return ("must be >= %s, got %s"):format(show(lo), shown) end
      return ("must be <= %s, got %s"):format(show(hi), shown)
    end
  end
  return nil
end

--- Checks one option's value against its spec; returns the value, or its default when absent.
--- Raises invalid_argument naming the function and the option (see check_opts).
---@param fname string
---@param name string
---@param v any
---@param s string|hoist.util.OptSpec
---@return any
function M.check_opt(fname, name, v, s)
  if type(s) == "string" then s = { type = s } end
  if v == nil then
    if s.required then M.fail("invalid_argument", ("%s: option '%s' is required"):format(fname, name), { option = name }) end
    if type(s.default) ~= "table" then return s.default end
    local copy = {}
    for dk, dv in pairs(s.default) do copy[dk] = dv end
    return copy
  end
  if not fits(s.type, v) then
    M.fail("invalid_argument", ("%s: option '%s' must be %s, got %s"):format(
      fname, name, article((s.type:gsub("|", " or "))), type(v)), { option = name })
  end
  local problem = M.value_problem(s, v)
  if problem then M.fail("invalid_argument", ("%s: option '%s' %s"):format(fname, name, problem), { option = name }) end
  if s.secret and type(v) == "string" then core.secret(v) end
  return v
end

--- Checks an options table against a spec and returns a copy with the defaults filled in.
--- Unknown options, wrong types, missing required options and values outside `allowed`
--- raise invalid_argument naming the function and the option:
--- "hoist.docker.run: option 'ports' must be a table, got string".
--- `spec[name]` is a hoist.util.OptSpec or just its type ("string"). When `key` is given, a
--- string in place of the table stands for `{[key] = string}`.
---@param fname string the public name, e.g. "hoist.docker.run"
---@param opts any
---@param spec table<string, string|hoist.util.OptSpec>
---@param key? string
---@return table
function M.check_opts(fname, opts, spec, key)
  if opts == nil then opts = {} end
  if key and type(opts) == "string" then opts = { [key] = opts } end
  if type(opts) ~= "table" then
    M.fail("invalid_argument", key and ("%s: expected %s or an options table, got %s"):format(fname, key, type(opts))
      or ("%s: options must be a table, got %s"):format(fname, type(opts)))
  end
  for k in pairs(opts) do
    if spec[k] == nil then
      M.fail("invalid_argument", ("%s: unknown option '%s' (known: %s)"):format(fname, tostring(k),
        table.concat(M.sorted_keys(spec), ", ")),
        { option = tostring(k) })
    end
  end
  local out = {}
  for k, s in pairs(spec) do out[k] = M.check_opt(fname, k, opts[k], s) end
  return out
end

--- The options of every call to a remote API (hoist.registry, hoist.azure, hoist.k8s): tries
--- per request, the backoff between them, the per-request timeout and dry run, with their
--- rules in one place (the engine reads the same fields into its rest::Options).
---@type table<string, hoist.util.OptSpec>
M.rest_options = {
  attempts = { type = "integer", min = 1 },
  backoff = { type = "number", min = 0 },
  max_backoff = { type = "number", min = 0 },
  timeout = { type = "number", min = 0 },
  dry_run = "boolean",
}

--- A new spec table: the keys of `base`, then those of `extra` (which win). How a module's
--- functions share their common options: `util.check_opts(fname, opts, util.spec(common, {...}))`.
---@param base table<string, string|hoist.util.OptSpec>
---@param extra? table<string, string|hoist.util.OptSpec>
---@return table<string, string|hoist.util.OptSpec>
function M.spec(base, extra)
  local s = {}
  for k, v in pairs(base) do s[k] = v end
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

---@class hoist.util.Alarm
---@field sleep fun(self: hoist.util.Alarm, seconds: number): boolean
---@field wake fun(self: hoist.util.Alarm)

--- A sleep another task can cut short: `a:sleep(seconds)` returns true when `a:wake()` was
--- called (before or during the sleep; each wake is used once), false when the time ran out.
--- The caller's own cancellation (SIGTERM) is never caught: it goes up from `sleep`, so a loop
--- around it cannot turn a cancellation into a spin. The one way to wait for "this long, or
--- until told" (a rollout's verdict, the end of an ARM operation).
---@return hoist.util.Alarm
function M.alarm()
  local a = { pending = false }
  function a:sleep(seconds)
    if self.pending then
      self.pending = false
      return true
    end
    self.task = hoist.spawn(hoist.sleep, seconds)
    local ok, err = pcall(self.task.wait, self.task)
    self.task = nil
    if ok then return false end
    if not self.pending then error(err, 0) end -- not woken: our own cancellation
    self.pending = false
    return true
  end
  function a:wake()
    self.pending = true
    if self.task then self.task:cancel() end
  end
  return a
end

--- The keys of a map, sorted by their text (so keys of any type sort): command lines, lists
--- and messages come out in the same order on every run. nil gives {}.
---@param map? table
---@return any[]
function M.sorted_keys(map)
  local keys = {}
  for k in pairs(map or {}) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

--- True when the run in progress is a dry run: mutating primitives record a plan step
--- (hoist.pipeline.plan) instead of acting. The one source: the engine's run context
--- (`hoist run --dry-run`, or hoist.pipeline.run{dry_run=} for its duration).
---@return boolean
function M.dry_run() return core.dry_run() end

--- One word for sh: as is when it holds only safe characters, else single-quoted.
--- Internal: the stdlib's one quoting of a command line shown to people (plans, dry runs).
---@param a any
---@return string
function M.shell_quote(a)
  a = tostring(a)
  if a:match("^[%w%._/:=@%-,+%%]+$") then return a end
  return "'" .. a:gsub("'", "'\\''") .. "'"
end
local shell_quote = M.shell_quote

---@class hoist.PlanStep
---@field message? string one human line (made from argv, method and url, or action when absent)
---@field action? string e.g. "docker.push"
---@field argv? string[] a command line
---@field method? string HTTP method
---@field url? string
---@field body? any
---@field manifest? any a document to apply
---@field stage? string

--- Records one planned change: an event of kind "plan" (message "would <message>"), which
--- the engine collects into the run's plan. Returns the step as recorded (a copy, message
--- filled in). The one recorder: hoist.pipeline.plan, hoist.docker, hoist.http, hoist.proxy
--- and the targets all come here.
---@param step hoist.PlanStep
---@return hoist.PlanStep
function M.plan(step)
  if type(step) ~= "table" then
    M.fail("invalid_argument", "hoist.pipeline.plan: expected a table {message=, argv= | method=, url= | manifest=}")
  end
  if step.argv ~= nil and type(step.argv) ~= "table" then
    M.fail("invalid_argument", "hoist.pipeline.plan: argv must be a list of strings")
  end
  local s = {}
  for k, v in pairs(step) do s[k] = v end
  if not s.message then
    if s.argv then
      local parts = {}
      -- scrub, then quote: quoting first would hide a secret holding ' from the scrubber
      for i, a in ipairs(s.argv) do parts[i] = shell_quote(core.scrub(tostring(a))) end
      s.message = table.concat(parts, " ")
    elseif s.method then
      s.message = ("%s %s"):format(s.method, s.url or "")
    elseif s.manifest then
      s.message = "apply a manifest"
    else
      s.message = s.action or "a change"
    end
  end
  core.log("info", "would " .. s.message, s, "plan")
  return s
end

return M
