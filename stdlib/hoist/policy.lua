--- hoist.policy: decides whether an image scan report may ship. Gates on severities, can
--- leave out findings that have no fix, and honours allow entries that carry a reason and an
--- expiry date (an expired entry stops allowing, and says so). See docs/trivy-policy.md.
local M = {}

local function trivy() return require "hoist.trivy" end

local util = require "hoist.util"
local fail = util.fail

---------------------------------------------------------------- dates

-- Days since 1970-01-01 of a civil date (proleptic Gregorian); os.time cannot do UTC.
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- The moment an expiry date "YYYY-MM-DD" takes effect: 00:00 UTC that day, as Trivy reads
--- `exp:` and `expired_at`. Returns nil and a reason for a malformed date.
---@param date string
---@return integer|nil epoch_seconds, string|nil err
function M.expiry_time(date)
  local y, m, d = tostring(date):match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if not y or m < 1 or m > 12 or d < 1 or d > 31 then
    return nil, ("%q is not a date (use YYYY-MM-DD)"):format(tostring(date))
  end
  local t = days_from_civil(y, m, d) * 86400
  local back = os.date("!*t", t) -- 2023-02-30 would come back as March 2nd
  if back.year ~= y or back.month ~= m or back.day ~= d then
    return nil, ("%q is not a date (no such day)"):format(date)
  end
  return t
end

---------------------------------------------------------------- options

---@class hoist.policy.Allow
---@field id string the finding id (CVE-..., GHSA-...)
---@field reason string why it is accepted: required
---@field expires? string YYYY-MM-DD: from 00:00 UTC that day the entry no longer allows
---@field package? string only this package (PkgName)
---@field paths? string[] only findings whose target (or PkgPath) matches one of these globs
---@field purls? string[] only packages with one of these package URLs (no version: any version)
---@field source? string where the entry came from (an ignore file line)

---@class hoist.policy.Options
---@field fail_on? string[]|string severities that fail the gate (a set, not a threshold); default {"CRITICAL"}
---@field ignore_unfixed? boolean findings whose status is not "fixed" do not fail the gate
---@field allow? hoist.policy.Allow[]
---@field now? number epoch seconds to judge expiry against (tests); default os.time()

--- Validates and normalizes gate options; raises invalid_argument naming the bad field.
---@param opts hoist.policy.Options
---@return table
function M.options(opts)
  if type(opts) ~= "table" then fail("invalid_argument", "policy: expected an options table") end
  local fail_on = trivy().severity_list(opts.fail_on, "policy: fail_on") or { "CRITICAL" }
  local o = { fail_on = fail_on, fail_set = {}, ignore_unfixed = opts.ignore_unfixed and true or false,
    allow = {}, now = opts.now or os.time() }
  for _, s in ipairs(fail_on) do o.fail_set[s] = true end
  if opts.allow ~= nil and type(opts.allow) ~= "table" then fail("invalid_argument", "policy: allow must be a list") end
  for i, a in ipairs(opts.allow or {}) do
    local where = ("policy: allow[%d]"):format(i)
    if type(a) ~= "table" then fail("invalid_argument", where .. " must be a table {id=, reason=, expires=}") end
    if type(a.id) ~= "string" or a.id == "" then fail("invalid_argument", where .. " needs an id") end
    where = ("%s (%s)"):format(where, a.id)
    if type(a.reason) ~= "string" or not a.reason:find("%S") then
      fail("invalid_argument", where .. " needs a reason: say why this finding is accepted")
    end
    local e = { id = a.id, reason = a.reason, expires = a.expires, package = a.package, paths = a.paths,
      purls = a.purls, source = a.source }
    if a.expires ~= nil then
      local t, err = M.expiry_time(a.expires)
      if not t then fail("invalid_argument", where .. ": expires " .. err) end
      e.expires_at = t
    end
    if a.package ~= nil and type(a.package) ~= "string" then
      fail("invalid_argument", where .. ": package must be a string")
    end
    for _, k in ipairs { "paths", "purls" } do
      if a[k] ~= nil and type(a[k]) ~= "table" then
        fail("invalid_argument", where .. ": " .. k .. " must be a list")
      end
    end
    o.allow[#o.allow + 1] = e
  end
  return o
end

--- Allow entries from a Trivy ignore file (plain or YAML): vulnerability entries only; the
--- YAML `statement` (or "listed in FILE") is the reason, `exp:`/`expired_at` the expiry.
---@param path string
---@return hoist.policy.Allow[]
function M.allow_from_ignorefile(path)
  local out = {}
  for _, e in ipairs(trivy().ignorefile(path)) do
    if e.kind == nil or e.kind == "vulnerability" then
      out[#out + 1] = { id = e.id, reason = e.statement or ("listed in " .. path), expires = e.expires,
        paths = e.paths, purls = e.purls, source = e.where }
    end
  end
  return out
end

---------------------------------------------------------------- matching

-- A glob (*, **, ?) as an anchored Lua pattern.
local function glob_pattern(glob)
  local p = glob:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0")
  p = p:gsub("%*%*/", "\1"):gsub("%*%*", "\2"):gsub("%*", "[^/]*"):gsub("%?", "[^/]")
  p = p:gsub("\1", ".-"):gsub("\2", ".*")
  return "^" .. p .. "$"
end

local function purl_matches(want, have)
  if not have then return false end
  have = have:gsub("%?.*$", "")
  return have == want or (not want:find("@", 1, true) and have:gsub("@.*$", "") == want)
end

local function any(items, pred)
  for _, x in ipairs(items) do if pred(x) then return true end end
  return false
end

local function matches(entry, f)
  if entry.id ~= f.id then return false end
  if entry.package and entry.package ~= f.package then return false end
  if entry.paths and #entry.paths > 0 and not any(entry.paths, function(g)
        local pat = glob_pattern(g)
        return f.target:find(pat) ~= nil or (f.pkg_path and f.pkg_path:find(pat) ~= nil)
      end) then
    return false
  end
  if entry.purls and #entry.purls > 0 and not any(entry.purls, function(p) return purl_matches(p, f.purl) end) then
    return false
  end
  return true
end

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

---------------------------------------------------------------- the gate

---@class hoist.policy.Verdict
---@field verdict "pass"|"fail"
---@field violations hoist.trivy.Vulnerability[] findings at a fail_on severity that nothing allows
---@field allowed table[] findings an active allow entry let through (with its reason, expires)
---@field expired table[] allow entries past their expiry: {id, reason, expires, matched, message}
---@field unfixed hoist.trivy.Vulnerability[] findings left out because ignore_unfixed
---@field unused hoist.policy.Allow[] active allow entries that matched nothing (can be removed)
---@field counts table<string, integer> the report's findings per severity
---@field fail_on string[]

local function as_report(report)
  if type(report) ~= "table" then fail("invalid_argument", "policy: expected a report, got " .. type(report)) end
  if report.targets then return report end
  return trivy().parse(report) -- a raw Trivy JSON report
end

--- Judges a report. Never raises for a failing verdict (see policy.enforce).
---@param report hoist.trivy.Report|table a normalized report or Trivy's decoded JSON
---@param opts? hoist.policy.Options
---@return hoist.policy.Verdict
function M.gate(report, opts)
  local o = M.options(opts or {})
  report = as_report(report)
  local r = { verdict = "pass", violations = {}, allowed = {}, expired = {}, unfixed = {}, unused = {},
    counts = report.counts, fail_on = o.fail_on }
  local active, expired, used, hits = {}, {}, {}, {}
  for _, e in ipairs(o.allow) do
    if e.expires_at and o.now >= e.expires_at then expired[#expired + 1] = e else active[#active + 1] = e end
  end
  for _, f in ipairs(trivy().findings(report)) do
    local function first(entries)
      for _, e in ipairs(entries) do if matches(e, f) then return e end end
    end
    local old = first(expired)
    if old then hits[old] = (hits[old] or 0) + 1 end
    local entry = first(active)
    if o.ignore_unfixed and f.status ~= "fixed" then
      r.unfixed[#r.unfixed + 1] = f
    elseif entry then
      used[entry] = true
      local a = copy(f)
      a.reason, a.expires, a.source = entry.reason, entry.expires, entry.source
      r.allowed[#r.allowed + 1] = a
    elseif o.fail_set[f.severity] then
      local v = copy(f)
      if old then v.expired_allow = { id = old.id, reason = old.reason, expires = old.expires } end
      r.violations[#r.violations + 1] = v
    end
  end
  for _, e in ipairs(expired) do
    local n = hits[e] or 0
    local x = { id = e.id, reason = e.reason, expires = e.expires, package = e.package, source = e.source, matched = n }
    x.message = ("allow entry for %s expired on %s (reason was: %s); it no longer allows %s"):format(
      e.id, e.expires, e.reason, n > 0 and (n .. (n == 1 and " finding" or " findings")) or "anything")
    r.expired[#r.expired + 1] = x
    hoist.log.warn("policy: " .. x.message, { id = e.id, expires = e.expires, source = e.source })
  end
  for _, e in ipairs(active) do
    if not used[e] then
      r.unused[#r.unused + 1] = { id = e.id, reason = e.reason, expires = e.expires, source = e.source }
    end
  end
  if #r.violations > 0 then r.verdict = "fail" end
  hoist.log.event("policy.verdict", ("policy: %s (%d violations, %d allowed, %d expired allow entries)"):format(
    r.verdict, #r.violations, #r.allowed, #r.expired), { verdict = r.verdict, counts = r.counts, fail_on = r.fail_on })
  return r
end

local function finding_text(v)
  return ("%s (%s %s, %s)"):format(v.id, v.package, v.installed,
    v.fixed and ("fixed in " .. v.fixed) or "no fix yet")
end

--- One paragraph saying why a verdict failed.
---@param r hoist.policy.Verdict
---@return string
function M.describe(r)
  if r.verdict == "pass" then
    return ("image policy passed: no finding at %s is left unallowed"):format(table.concat(r.fail_on, "/"))
  end
  local items = {}
  for i = 1, math.min(5, #r.violations) do items[i] = finding_text(r.violations[i]) end
  if #r.violations > 5 then items[#items + 1] = ("and %d more"):format(#r.violations - 5) end
  local text = ("image policy failed: %d %s at %s: %s"):format(#r.violations,
    #r.violations == 1 and "finding" or "findings", table.concat(r.fail_on, "/"), table.concat(items, ", "))
  if #r.expired > 0 then
    local ids = {}
    for i, e in ipairs(r.expired) do ids[i] = e.id .. " (expired " .. e.expires .. ")" end
    text = text .. "; allow entries past their expiry: " .. table.concat(ids, ", ")
  end
  return text
end

--- Like gate, but a failing verdict raises policy_violation (details: violations, counts,
--- expired, exit_code = 4). Returns the verdict when it passes.
---@param report hoist.trivy.Report|table
---@param opts? hoist.policy.Options
---@return hoist.policy.Verdict
function M.enforce(report, opts)
  local r = M.gate(report, opts)
  if r.verdict == "fail" then
    fail("policy_violation", M.describe(r), { violations = r.violations, counts = r.counts, expired = r.expired,
      fail_on = r.fail_on, exit_code = 4 })
  end
  return r
end


---------------------------------------------------------------- summaries

local function cell(v)
  v = tostring(v or ""):gsub("[\r\n]+", " "):gsub("|", "\\|")
  if #v > 90 then v = v:sub(1, 87) .. "..." end
  return v
end

local function plural(n, word) return n .. " " .. word .. (n == 1 and "" or "s") end

--- A markdown summary (for a GitHub step summary or a run report): verdict, counts per
--- severity, the top findings by severity (id, package, installed, fixed, severity, title),
--- allowed and expired entries. `report` may also be a trivy.gate_scan result; one whose
--- scan did not run gives a plain "no scan ran" notice with its warning.
---@param report hoist.trivy.Report|hoist.trivy.GateScanResult|nil
---@param verdict? hoist.policy.Verdict
---@param opts? {top?: integer, title?: string}
---@return string
function M.markdown(report, verdict, opts)
  opts = opts or {}
  local title = opts.title or "Image scan"
  if type(report) == "table" and report.ran ~= nil then -- a gate_scan result
    if not report.ran then
      local why = report.warning or ("the scan mode is " .. tostring(report.mode))
      return ("### %s\n\n**NO SCAN RAN**: %s\n"):format(title, why)
    end
    report, verdict = report.report, verdict or report.verdict
  end
  report = as_report(report)
  local out = {}
  local function add(line) out[#out + 1] = line end
  add(("### %s: `%s`"):format(title, cell(report.artifact or "?")))
  add("")
  if verdict then
    if verdict.verdict == "fail" then
      add(("**FAIL**: %s at %s violate the policy."):format(plural(#verdict.violations, "finding"),
        table.concat(verdict.fail_on, "/")))
    else
      add(("**PASS**: no unallowed finding at %s."):format(table.concat(verdict.fail_on, "/")))
    end
    add("")
  end
  if report.digest then add(("Digest: `%s`"):format(report.digest)); add("") end
  local sev = trivy().SEVERITIES
  local counts = {}
  for i, s in ipairs(sev) do counts[i] = tostring(report.counts[s] or 0) end
  add("| " .. table.concat(sev, " | ") .. " | Total |")
  add(string.rep("|---:", #sev + 1) .. "|")
  add("| " .. table.concat(counts, " | ") .. " | " .. report.total .. " |")
  local findings = trivy().findings(report)
  local top = math.min(opts.top or 10, #findings)
  if top > 0 then
    add("")
    add(("#### Top findings (%d of %d)"):format(top, #findings))
    add("")
    add("| ID | Package | Installed | Fixed | Severity | Title |")
    add("|---|---|---|---|---|---|")
    for i = 1, top do
      local f = findings[i]
      local id = f.url and ("[%s](%s)"):format(cell(f.id), f.url) or cell(f.id)
      add(("| %s | %s | %s | %s | %s | %s |"):format(id, cell(f.package), cell(f.installed),
        cell(f.fixed or "no fix"), f.severity, cell(f.title)))
    end
  end
  if verdict and #verdict.allowed > 0 then
    add(""); add("#### Allowed"); add("")
    for _, a in ipairs(verdict.allowed) do
      local until_ = a.expires and (" (until " .. a.expires .. ")") or ""
      add(("- %s in %s: %s%s"):format(a.id, a.package, cell(a.reason), until_))
    end
  end
  if verdict and #verdict.expired > 0 then
    add(""); add("#### Expired allow entries"); add("")
    for _, e in ipairs(verdict.expired) do add("- " .. cell(e.message)) end
  end
  if verdict and #verdict.unfixed > 0 then
    add(""); add(("%s without a fix were not counted (ignore_unfixed)."):format(plural(#verdict.unfixed, "finding")))
  end
  return table.concat(out, "\n") .. "\n"
end

return M
