--- hoist.doctor: which external tools hoist can use on this machine, their versions, and
--- what a missing one disables. Used by `hoist doctor [--json]`; always succeeds.
local process = require "hoist.process"
local json = require "hoist.native.json"
local hoist = require "hoist"

local M = {}

local kTimeout = 10 -- seconds per probe: a hung daemon must not hang the doctor

---@class hoist.DoctorTool
---@field name string
---@field program string what is looked up on PATH
---@field version_argv string[] prints the version
---@field parse fun(out: string): string|nil version from stdout
---@field disables string what hoist cannot do without it

local function first_match(pattern)
  return function(out) return out:match(pattern) end
end

local function json_field(...)
  local path = { ... }
  return function(out)
    local ok, v = pcall(json.decode, out)
    if not ok then return nil end
    for _, k in ipairs(path) do
      if type(v) ~= "table" then return nil end
      v = v[k]
    end
    return type(v) == "string" and v or nil
  end
end

---@return hoist.DoctorTool[]
local function tools()
  return {
    { name = "docker", program = "docker", version_argv = { "--version" },
      parse = first_match("version ([%w%.%-%+]+)"),
      disables = "docker build/push/run and the local target" },
    { name = "az", program = "az", version_argv = { "version", "-o", "json" },
      parse = json_field("azure-cli"),
      disables = "only the az CLI credential fallback" },
    { name = "kubectl", program = "kubectl", version_argv = { "version", "--client", "-o", "json" },
      parse = json_field("clientVersion", "gitVersion"),
      disables = "nothing essential: hoist speaks to the Kubernetes API itself" },
    { name = "helm", program = "helm", version_argv = { "version", "--short" },
      parse = first_match("v?(%d[%w%.%-%+]*)"),
      disables = "helm releases on AKS" },
    { name = "trivy", program = process.env("HOIST_TRIVY") or "trivy", version_argv = { "--version" },
      parse = first_match("Version: ([%w%.%-%+]+)"),
      disables = "the scan gate (scan=required stops before push)" },
    { name = "skopeo", program = "skopeo", version_argv = { "--version" },
      parse = first_match("version ([%w%.%-%+]+)"),
      disables = "only the benchmark peer" },
    { name = "git", program = "git", version_argv = { "--version" },
      parse = first_match("version ([%w%.%-%+]+)"),
      disables = "git-sha tags" },
  }
end

local function first_line(text)
  return (text:match("[^\n]+") or ""):gsub("%s+$", "")
end

-- Runs argv with a timeout; returns the result, or nil and a reason.
local function probe(argv)
  argv.timeout = kTimeout
  local ok, r = pcall(process.exec, argv)
  if not ok then return nil, type(r) == "table" and r.message or tostring(r) end
  if r.timed_out then return nil, ("no answer within %ds"):format(kTimeout) end
  if r.code ~= 0 then
    return nil, ("exit code %d: %s"):format(r.code, first_line(r.stderr ~= "" and r.stderr or r.stdout))
  end
  return r
end

-- Trivy also works as the aquasec/trivy image in the local engine (hoist.trivy.scanner).
local function trivy_image()
  local ok, scanner = pcall(function() return require("hoist.trivy").scanner() end)
  if ok and scanner and scanner.kind == "docker" then return scanner end
end

local function check(tool)
  local report = { name = tool.name, program = tool.program, disables = tool.disables, found = false }
  local path = process.which(tool.program)
  if not path and tool.name == "trivy" then
    local scanner = trivy_image()
    if scanner then
      report.found, report.path, report.version = true, "image " .. scanner.image .. " (local docker engine)", "image"
    end
    return report
  end
  if not path then return report end
  report.found, report.path = true, path
  local argv = { path }
  for _, a in ipairs(tool.version_argv) do argv[#argv + 1] = a end
  local r, why = probe(argv)
  report.version = r and tool.parse(r.stdout) or nil
  if not report.version then report.problem = why or ("cannot read the version: " .. first_line(r.stdout)) end
  if tool.name == "docker" then
    local s, reason = probe { path, "version", "--format", "{{.Server.Version}}" }
    report.daemon = { reachable = s ~= nil, version = s and first_line(s.stdout) or nil, problem = reason }
  end
  return report
end

local function print_table(reports)
  local rows = { { "tool", "status", "version", "notes" } }
  for _, t in ipairs(reports) do
    local notes
    if not t.found then
      notes = "without it: " .. t.disables
    elseif t.problem then
      notes = t.problem
    else
      notes = t.path
    end
    if t.daemon then
      notes = notes .. (t.daemon.reachable and ("; daemon " .. t.daemon.version)
        or ("; daemon unreachable (" .. (t.daemon.problem or "?") .. "): " .. t.disables))
    end
    rows[#rows + 1] = { t.name, t.found and "found" or "missing", t.version or "-", notes }
  end
  local width = { 0, 0, 0 }
  for _, row in ipairs(rows) do
    for i = 1, 3 do width[i] = math.max(width[i], #row[i]) end
  end
  for _, row in ipairs(rows) do
    print(("%-" .. width[1] .. "s  %-" .. width[2] .. "s  %-" .. width[3] .. "s  %s")
      :format(row[1], row[2], row[3], row[4]))
  end
end

--- Checks every tool concurrently and prints a table (or one JSON object with json = true).
--- Missing tools are reported, never an error.
---@param opts? {json?: boolean}
---@return table report {tools = {...}}
function M.main(opts)
  opts = opts or {}
  local reports = hoist.map(tools(), check)
  local report = { tools = reports }
  if opts.json then
    print(json.encode(report))
  else
    print_table(reports)
  end
  return report
end

return M
