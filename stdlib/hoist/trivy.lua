--- hoist.trivy: runs Trivy on an image and reads its report. Trivy is the binary on PATH (or
--- $HOIST_TRIVY), else the aquasec/trivy image when the local docker engine has it. Reports are
--- normalized into plain tables and cached by image digest in the state dir.
--- See docs/trivy-policy.md.
local M = {}

--- Severities from worst to least.
M.SEVERITIES = { "CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN" }
local RANK = {}
for i, s in ipairs(M.SEVERITIES) do RANK[s] = i end
M.RANK = RANK

--- Test hooks: replace to fake the environment or PATH lookups; `env` is added to the
--- environment of the trivy (or docker) child process.
M.hooks = {
  getenv = os.getenv,
  which = function(name) return hoist.which(name) end,
  env = nil,
}

local DEFAULT_TIMEOUT = 300 -- Trivy's own default is 5m
local DEFAULT_MAX_AGE = 24 * 3600 -- the vulnerability DB changes daily

local util = require "hoist.util"
local fail = util.fail

-- JSON null arrives as a sentinel; these read a field as the type we expect or nil.
local function str(v) return type(v) == "string" and v or nil end
local function list(v) return type(v) == "table" and v or {} end

local fs = require "hoist.fs"

-- The digest an image reference names (hoist.image), nil when it names none or is not one.
local function digest_of(image)
  local ok, ref = pcall(hoist.image.parse, image)
  return ok and ref.digest or nil
end

-- nil when the file cannot be read (missing, a folder, no permission)
local function read_file(path)
  local ok, text = pcall(fs.read_file, path)
  return ok and text or nil
end

---------------------------------------------------------------- options

--- A checked, upper-cased severity list from {"high","CRITICAL"} or "HIGH,CRITICAL"; nil when
--- v is nil. Raises invalid_argument, prefixed with `what`, for anything else.
---@param v string[]|string|nil
---@param what string names the option in errors
---@return string[]|nil
function M.severity_list(v, what)
  if v == nil then return nil end
  local out = {}
  if type(v) == "string" then
    for s in v:gmatch("[^,%s]+") do out[#out + 1] = s end
  elseif type(v) == "table" then
    for _, s in ipairs(v) do out[#out + 1] = s end
  else
    fail("invalid_argument", ("%s: expected a list of severities, got %s"):format(what, type(v)))
  end
  for i, s in ipairs(out) do
    if type(s) ~= "string" or not RANK[s:upper()] then
      fail("invalid_argument", ("%s: unknown severity %s (use %s)"):format(
        what, tostring(s), table.concat(M.SEVERITIES, ", ")))
    end
    out[i] = s:upper()
  end
  return out
end

local SCAN_SPEC = {
  image = { type = "string", required = true }, digest = "string", severity = "table|string",
  ignore_unfixed = "boolean", ignorefile = "string", timeout = "number", skip_db_update = "boolean",
  cache = "boolean", cache_dir = "string", max_age = "number",
}

local function check_scan_opts(opts)
  util.check_opts("hoist.trivy.scan", opts, SCAN_SPEC)
  if opts.image == "" then fail("invalid_argument", "hoist.trivy.scan: option 'image' (an image reference) must not be empty") end
  if opts.image:sub(1, 1) == "-" then
    fail("invalid_argument", "trivy.scan: image must not start with '-': " .. opts.image)
  end
  if opts.timeout ~= nil and (type(opts.timeout) ~= "number" or opts.timeout <= 0) then
    fail("invalid_argument", "trivy.scan: timeout must be a positive number of seconds")
  end
  if opts.ignorefile ~= nil and type(opts.ignorefile) ~= "string" then
    fail("invalid_argument", "trivy.scan: ignorefile must be a path")
  end
  if opts.digest ~= nil and not (type(opts.digest) == "string" and opts.digest:match("^[%w+._-]+:%x+$")) then
    fail("invalid_argument", "trivy.scan: digest must look like sha256:<hex>, got " .. tostring(opts.digest))
  end
  return M.severity_list(opts.severity, "trivy.scan: severity")
end

---------------------------------------------------------------- finding the scanner

local HOW_TO = "install trivy (https://trivy.dev) on PATH or set HOIST_TRIVY=/path/to/trivy, "
  .. "or load the aquasec/trivy image into the local docker engine "
  .. "(docker pull aquasec/trivy, or docker load -i trivy.tar)"
M.HOW_TO_INSTALL = HOW_TO

local function docker_program()
  local b = M.hooks.getenv("HOIST_DOCKER_BIN")
  if b and b ~= "" then return b end
  return M.hooks.which("docker")
end

-- The newest-looking local tag of the trivy image, or nil and why not.
local function docker_trivy_image(docker)
  local wanted = M.hooks.getenv("HOIST_TRIVY_IMAGE")
  if not wanted or wanted == "" then wanted = "aquasec/trivy" end
  local ok, r = util.try(hoist.exec, { docker, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
    wanted, timeout = 20, env = M.hooks.env })
  if not ok then return nil, "docker could not run: " .. tostring(r.message or r) end
  if r.code ~= 0 then return nil, "docker engine not reachable: " .. (r.stderr:match("[^\n]+") or "") end
  local first, latest
  for line in r.stdout:gmatch("[^\n]+") do
    if not line:match(":<none>$") then
      first = first or line
      if line:match(":latest$") or line == wanted then latest = line end
    end
  end
  if not first then return nil, "the local docker engine has no " .. wanted .. " image" end
  return latest or first
end

---@class hoist.trivy.Scanner
---@field kind "binary"|"docker"
---@field path? string the trivy program (kind binary)
---@field docker? string the docker program (kind docker)
---@field image? string the trivy image (kind docker)

--- Finds a scanner: $HOIST_TRIVY, trivy on PATH, or the aquasec/trivy image in the local
--- docker engine. Returns nil and the reasons when there is none.
---@return hoist.trivy.Scanner|nil, string|nil
function M.scanner()
  local env = M.hooks.getenv("HOIST_TRIVY")
  if env and env ~= "" then
    local path = env:find("/", 1, true) and env or M.hooks.which(env)
    if path and fs.exists(path) then return { kind = "binary", path = path } end
    return nil, ("HOIST_TRIVY=%s: no such program"):format(env)
  end
  local path = M.hooks.which("trivy")
  if path then return { kind = "binary", path = path } end
  local docker = docker_program()
  if not docker then return nil, "trivy is not on PATH and docker is not installed" end
  local image, why = docker_trivy_image(docker)
  if not image then return nil, "trivy is not on PATH and " .. why end
  return { kind = "docker", docker = docker, image = image }
end

local function require_scanner()
  local s, why = M.scanner()
  if not s then
    fail("tool_missing", ("no Trivy scanner: %s. To fix it: %s"):format(why, HOW_TO), { reason = why })
  end
  return s
end

---------------------------------------------------------------- running it

local function abspath(path)
  if path:sub(1, 1) == "/" then return path end
  return fs.absolute(path)
end

-- The argv of one scan: trivy's flags are the same for the binary and the container, only
-- the paths of mounted files differ.
local function scan_argv(scanner, opts, severities, format)
  local args = { "image", "--format", format, "--quiet" }
  local pre = {}
  if severities then
    args[#args + 1] = "--severity"
    args[#args + 1] = table.concat(severities, ",")
  end
  if opts.ignore_unfixed then args[#args + 1] = "--ignore-unfixed" end
  if opts.ignorefile then
    local file = opts.ignorefile
    if scanner.kind == "docker" then
      local ext = file:match("%.ya?ml$") and ".yaml" or ""
      local inside = "/hoist/trivyignore" .. ext
      pre[#pre + 1] = "-v"
      pre[#pre + 1] = abspath(file) .. ":" .. inside .. ":ro"
      file = inside
    end
    args[#args + 1] = "--ignorefile"
    args[#args + 1] = file
  end
  args[#args + 1] = "--timeout"
  args[#args + 1] = ("%ds"):format(math.ceil(opts.timeout or DEFAULT_TIMEOUT))
  if opts.skip_db_update then args[#args + 1] = "--skip-db-update" end
  args[#args + 1] = opts.image

  if scanner.kind == "binary" then
    table.insert(args, 1, scanner.path)
    return args
  end
  -- The container reads the image from the host engine through its socket, and keeps its
  -- vulnerability DB in the state dir so it is not downloaded on every run.
  local host = M.hooks.getenv("DOCKER_HOST") or ""
  local sock = host:match("^unix://(.+)$") or "/var/run/docker.sock"
  local argv = { scanner.docker, "run", "--rm", "--network", "host",
    "-v", sock .. ":/var/run/docker.sock" }
  local state = opts.cache_dir or (hoist.run.state_dir ~= "" and hoist.run.state_dir .. "/cache") or nil
  if state then
    local db = abspath(state .. "/trivy-db")
    fs.mkdir(db)
    argv[#argv + 1] = "-v"
    argv[#argv + 1] = db .. ":/root/.cache/trivy"
  end
  for _, a in ipairs(pre) do argv[#argv + 1] = a end
  argv[#argv + 1] = scanner.image
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return argv
end

-- Trivy's own explanation: its FATAL line, else the last lines of stderr.
local function trivy_reason(stderr)
  local fatal
  for line in stderr:gmatch("[^\n]+") do
    local m = line:match("FATAL%s+(.*)$")
    if m then fatal = m:gsub("^Fatal error%s+", "") end
  end
  if fatal then return fatal end
  local tail = stderr:sub(-400):gsub("%s+$", "")
  return tail ~= "" and tail or "no output on stderr"
end

local function run_trivy(scanner, opts, severities, format)
  local argv = scan_argv(scanner, opts, severities, format)
  hoist.log.info("trivy: scanning " .. opts.image, { format = format, scanner = scanner.kind })
  local spec = { timeout = (opts.timeout or DEFAULT_TIMEOUT) + 60, env = M.hooks.env }
  for i, a in ipairs(argv) do spec[i] = a end
  local r = hoist.exec(spec)
  if r.timed_out then
    fail("timeout", ("trivy did not finish scanning %s within %ds"):format(opts.image, spec.timeout),
      { argv = argv, stderr = r.stderr:sub(-2000) })
  end
  if r.code ~= 0 then
    fail("tool_failed", ("trivy failed scanning %s (exit %s): %s"):format(
      opts.image, tostring(r.code), trivy_reason(r.stderr)),
      { argv = argv, status = r.code, stderr = r.stderr:sub(-4000) })
  end
  return r.stdout
end

---------------------------------------------------------------- the cache

local function cache_file(opts, digest, ext)
  if opts.cache == false or not digest then return nil end
  local dir = opts.cache_dir
  if not dir then
    local state = hoist.run.state_dir
    if not state or state == "" then return nil end
    dir = state .. "/cache"
  end
  return dir .. "/trivy/" .. digest .. ext
end

-- What makes two scans of one digest give the same report.
local function cache_key(opts, severities, format)
  local ignore = opts.ignorefile and (read_file(opts.ignorefile) or "<missing>") or ""
  return hoist.json.encode { format = format, severity = severities and table.concat(severities, ",") or "",
    ignore_unfixed = opts.ignore_unfixed and true or false, ignorefile = ignore }
end

local function cache_get(path, key, max_age)
  local text = path and read_file(path)
  if not text then return nil end
  local ok, entry = pcall(hoist.json.decode, text)
  if not ok or type(entry) ~= "table" or entry.key ~= key then return nil end
  if type(entry.scanned_at) ~= "number" or os.time() - entry.scanned_at > max_age then return nil end
  return entry.output
end

local function cache_put(path, key, output)
  if not path then return end
  local ok, err = pcall(fs.write_file, path, hoist.json.encode { key = key, scanned_at = os.time(), output = output })
  if not ok then hoist.log.warn("trivy: cannot write the cache file " .. path .. ": " .. tostring(err)) end
end

-- Runs trivy (or reuses the cached output for this digest and these options).
local function scan_output(opts, severities, format, ext)
  local digest = opts.digest or digest_of(opts.image)
  local path = cache_file(opts, digest, ext)
  local key = cache_key(opts, severities, format)
  local cached = cache_get(path, key, opts.max_age or DEFAULT_MAX_AGE)
  if cached then
    hoist.log.info("trivy: reusing the " .. format .. " report cached for " .. digest)
    return cached, true, nil, digest
  end
  local scanner = require_scanner()
  local output = run_trivy(scanner, opts, severities, format)
  cache_put(path, key, output)
  return output, false, scanner, digest
end

---------------------------------------------------------------- reports

---@class hoist.trivy.Vulnerability
---@field id string VulnerabilityID, e.g. "CVE-2019-1549"
---@field package string PkgName
---@field installed string InstalledVersion
---@field fixed? string FixedVersion (nil when there is no fix)
---@field severity string CRITICAL|HIGH|MEDIUM|LOW|UNKNOWN
---@field status string Trivy's Status; for reports without one: "fixed" when there is a fix, else "affected"
---@field title? string
---@field url? string PrimaryURL
---@field purl? string PkgIdentifier.PURL
---@field pkg_path? string PkgPath (language packages inside an image)
---@field target string the Target it was found in

---@class hoist.trivy.Target
---@field target string
---@field class? string os-pkgs|lang-pkgs|...
---@field type? string alpine|debian|npm|...
---@field vulnerabilities hoist.trivy.Vulnerability[]

---@class hoist.trivy.Report
---@field artifact? string ArtifactName
---@field artifact_type? string
---@field digest? string the image digest the report is for (sha256:...), when known
---@field image_id? string Metadata.ImageID
---@field os? string "alpine 3.10.2"
---@field targets hoist.trivy.Target[]
---@field counts table<string, integer> findings per severity (every severity present, 0 when none)
---@field total integer
---@field raw table the decoded Trivy JSON
---@field output? string the JSON text Trivy printed (what trivy.sarif converts, without a second scan)
---@field cached? boolean true when scan reused a cached report
---@field scan? table the options the report was scanned with (used by trivy.sarif)
---@field scanner? string "binary"|"docker" (nil when the cache answered)

local function severity_of(v)
  local s = str(v) and v:upper() or "UNKNOWN"
  return RANK[s] and s or "UNKNOWN"
end

local function normalize_vuln(v, target)
  local fixed = str(v.FixedVersion)
  if fixed == "" then fixed = nil end
  return {
    id = str(v.VulnerabilityID) or "?",
    package = str(v.PkgName) or "?",
    installed = str(v.InstalledVersion) or "",
    fixed = fixed,
    severity = severity_of(v.Severity),
    status = str(v.Status) or (fixed and "fixed" or "affected"),
    title = str(v.Title),
    url = str(v.PrimaryURL),
    purl = type(v.PkgIdentifier) == "table" and str(v.PkgIdentifier.PURL) or nil,
    pkg_path = str(v.PkgPath),
    target = target,
  }
end

--- Normalizes a Trivy JSON report (text or decoded table, SchemaVersion 2).
---@param raw string|table
---@param opts? {digest?: string}
---@return hoist.trivy.Report
function M.parse(raw, opts)
  opts = opts or {}
  if type(raw) == "string" then
    local ok, decoded = pcall(hoist.json.decode, raw)
    if not ok or type(decoded) ~= "table" then
      fail("invalid_argument", "trivy.parse: not a JSON report: " .. tostring(decoded and decoded.message or decoded))
    end
    raw = decoded
  end
  if type(raw) ~= "table" then fail("invalid_argument", "trivy.parse: expected a report, got " .. type(raw)) end
  if raw.SchemaVersion ~= 2 then
    fail("invalid_argument", ("trivy.parse: unsupported report SchemaVersion %s (hoist reads 2)"):format(
      tostring(raw.SchemaVersion)), { schema_version = raw.SchemaVersion })
  end
  local meta = type(raw.Metadata) == "table" and raw.Metadata or {}
  local digest = opts.digest
  if not digest then
    local rd = str(list(meta.RepoDigests)[1])
    digest = rd and digest_of(rd)
  end
  local osinfo = type(meta.OS) == "table" and meta.OS or {}
  local report = {
    artifact = str(raw.ArtifactName), artifact_type = str(raw.ArtifactType), digest = digest,
    image_id = str(meta.ImageID),
    os = str(osinfo.Family) and ((osinfo.Family .. " " .. (str(osinfo.Name) or "")):gsub("%s+$", "")) or nil,
    targets = {}, counts = {}, total = 0, raw = raw,
  }
  for _, s in ipairs(M.SEVERITIES) do report.counts[s] = 0 end
  for _, r in ipairs(list(raw.Results)) do
    local t = { target = str(r.Target) or "", class = str(r.Class), type = str(r.Type), vulnerabilities = {} }
    for _, v in ipairs(list(r.Vulnerabilities)) do
      local n = normalize_vuln(v, t.target)
      t.vulnerabilities[#t.vulnerabilities + 1] = n
      report.counts[n.severity] = report.counts[n.severity] + 1
      report.total = report.total + 1
    end
    report.targets[#report.targets + 1] = t
  end
  return report
end

--- Every finding of a report, worst severity first (then by id, package).
---@param report hoist.trivy.Report
---@return hoist.trivy.Vulnerability[]
function M.findings(report)
  local out = {}
  for _, t in ipairs(report.targets or {}) do
    for _, v in ipairs(t.vulnerabilities) do out[#out + 1] = v end
  end
  table.sort(out, function(a, b)
    if a.severity ~= b.severity then return RANK[a.severity] < RANK[b.severity] end
    if a.id ~= b.id then return a.id < b.id end
    return a.package < b.package
  end)
  return out
end

---------------------------------------------------------------- ignore files

---@class hoist.trivy.IgnoreEntry
---@field id string
---@field kind? string vulnerability|misconfiguration|secret|license (YAML files); nil in plain files (any finding)
---@field expires? string YYYY-MM-DD (plain `exp:`, YAML `expired_at`)
---@field statement? string why it is ignored (YAML)
---@field paths? string[] globs the finding's target must match (YAML)
---@field purls? string[] package URLs the finding's package must match (YAML)
---@field where string file:line (plain) or file (YAML)

local function date_field(v, where)
  if v == nil then return nil end
  local d = tostring(v):match("^%s*[\"']?(%d%d%d%d%-%d%d%-%d%d)")
  if not d then
    fail("invalid_argument", ("%s: cannot read the expiry date %q (use YYYY-MM-DD)"):format(where, tostring(v)))
  end
  return d
end

local function parse_plain(text, path)
  local out, n = {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("^%s+", ""):gsub("%s+$", "")
    if line ~= "" and line:sub(1, 1) ~= "#" then
      local fields = {}
      for f in line:gmatch("%S+") do fields[#fields + 1] = f end
      local e = { id = fields[1], where = path .. ":" .. n }
      for i = 2, #fields do
        local exp = fields[i]:match("^exp:(.*)$")
        if exp then e.expires = date_field(exp, e.where) end
      end
      out[#out + 1] = e
    end
  end
  return out
end

local KINDS = { vulnerabilities = "vulnerability", misconfigurations = "misconfiguration",
  secrets = "secret", licenses = "license" }

local function strings(v, what)
  if v == nil then return nil end
  if type(v) ~= "table" then fail("invalid_argument", what .. " must be a list of strings") end
  local out = {}
  for _, s in ipairs(v) do out[#out + 1] = tostring(s) end
  return out
end

local function parse_yaml(text, path)
  if not hoist.yaml then fail("internal", "trivy.ignorefile: hoist.yaml is not available to read " .. path) end
  local ok, doc = pcall(hoist.yaml.decode, text)
  if not ok then fail("invalid_argument", path .. ": not valid YAML: " .. tostring(doc.message or doc)) end
  local out = {}
  if type(doc) ~= "table" then return out end
  for section, kind in pairs(KINDS) do
    for i, item in ipairs(list(doc[section])) do
      local where = ("%s: %s[%d]"):format(path, section, i)
      if type(item) ~= "table" or not str(item.id) then fail("invalid_argument", where .. ": needs an id") end
      out[#out + 1] = { id = item.id, kind = kind, where = where, statement = str(item.statement),
        expires = date_field(item.expired_at, where), paths = strings(item.paths, where .. ".paths"),
        purls = strings(item.purls, where .. ".purls") }
    end
  end
  table.sort(out, function(a, b) return a.where < b.where end)
  return out
end

--- Reads a Trivy ignore file: plain (`.trivyignore`: one id a line, optional `exp:YYYY-MM-DD`)
--- or YAML (`.trivyignore.yaml`: vulnerabilities/misconfigurations/secrets/licenses lists of
--- {id, statement, expired_at, paths, purls}). Raises not_found when the file is missing.
---@param path string
---@return hoist.trivy.IgnoreEntry[]
function M.ignorefile(path)
  if type(path) ~= "string" then fail("invalid_argument", "trivy.ignorefile: expected a path") end
  local text = read_file(path)
  if not text then fail("not_found", "trivy.ignorefile: no such file: " .. path) end
  -- Trivy goes by the extension; a copy named like "x.yaml.example" is recognised by its
  -- first line, which a plain file cannot have (ids do not end with ':').
  local body = text
  repeat local n body, n = body:gsub("^%s*#[^\n]*\n", "") until n == 0
  local first = body:match("^%s*(%w+):%s*\n")
  if path:match("%.ya?ml$") or (first and KINDS[first]) then return parse_yaml(text, path) end
  return parse_plain(text, path)
end

---------------------------------------------------------------- scanning

--- Scans an image with Trivy and returns the normalized report. Cached by digest (opts.digest
--- or an image pinned by @sha256:...) under <state_dir>/cache/trivy/<digest>.json.
---@class hoist.trivy.ScanOptions
---@field image string the reference trivy scans
---@field digest? string sha256:... of the image: the cache key
---@field severity? string[]|string only these severities (--severity)
---@field ignore_unfixed? boolean --ignore-unfixed
---@field ignorefile? string --ignorefile (.trivyignore or .trivyignore.yaml)
---@field timeout? number seconds (default 300)
---@field skip_db_update? boolean --skip-db-update
---@field cache? boolean false: do not read or write the cache
---@field cache_dir? string instead of <state_dir>/cache
---@field max_age? number seconds a cached report stays good (default 86400)

---@param opts hoist.trivy.ScanOptions
---@return hoist.trivy.Report
function M.scan(opts)
  local severities = check_scan_opts(opts)
  local output, cached, scanner, digest = scan_output(opts, severities, "json", ".json")
  local ok, report = pcall(M.parse, output, { digest = digest })
  if not ok then
    fail("tool_failed", "trivy printed a report hoist cannot read: " .. tostring(report.message or report),
      { stdout_start = output:sub(1, 500) })
  end
  report.cached = cached
  report.output = output
  report.scanner = scanner and scanner.kind or nil
  report.scan = { image = opts.image, digest = digest, severity = severities, ignore_unfixed = opts.ignore_unfixed,
    ignorefile = opts.ignorefile, timeout = opts.timeout, skip_db_update = opts.skip_db_update,
    cache = opts.cache, cache_dir = opts.cache_dir, max_age = opts.max_age }
  hoist.log.event("trivy.report", ("trivy: %s: %d findings"):format(opts.image, report.total),
    { image = opts.image, digest = digest, counts = report.counts, cached = cached })
  return report
end

-- `trivy convert --format <format>` of a report's JSON: Trivy's own rendering of that scan,
-- without scanning again.
local function convert(report, format)
  local scanner = require_scanner()
  local file = os.tmpname()
  fs.write_file(file, report.output)
  local args = { "convert", "--format", format, "--quiet" }
  local argv
  if scanner.kind == "binary" then
    argv = { scanner.path }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    argv[#argv + 1] = file
  else
    argv = { scanner.docker, "run", "--rm", "-v", file .. ":/hoist/report.json:ro", scanner.image }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    argv[#argv + 1] = "/hoist/report.json"
  end
  argv.timeout, argv.env = 120, M.hooks.env
  local r = hoist.exec(argv)
  os.remove(file)
  if r.code ~= 0 then
    fail("tool_failed", ("trivy convert --format %s of the report of %s failed (exit %s): %s"):format(format,
      tostring(report.artifact), tostring(r.code), trivy_reason(r.stderr)), { status = r.code, stderr = r.stderr:sub(-4000) })
  end
  return r.stdout
end

--- Trivy's own SARIF for a scan. Given a report returned by trivy.scan, `trivy convert` turns
--- that scan's JSON into SARIF (no second scan: the gate and the SARIF come from the same one);
--- given the options trivy.scan takes, a trivy run with --format sarif (cached by digest like
--- the JSON report). Passed through unchanged; written to opts.output when given.
---@param what hoist.trivy.Report|table
---@param opts? {output?: string}
---@return string sarif
function M.sarif(what, opts)
  if type(what) ~= "table" then fail("invalid_argument", "trivy.sarif: expected a report or scan options") end
  local text
  if type(what.output) == "string" and type(what.raw) == "table" then
    text = convert(what, "sarif")
  else
    local scan = what.scan or what
    local severities = check_scan_opts(scan)
    text = scan_output(scan, severities, "sarif", ".sarif.json")
  end
  if opts and opts.output then
    local ok, err = pcall(fs.write_file, opts.output, text)
    if not ok then fail("internal", "trivy.sarif: cannot write " .. opts.output .. ": " .. tostring(err)) end
  end
  return text
end

---------------------------------------------------------------- the scan stage of a pipeline

local MODES = { required = true, if_available = true, off = true }

---@class hoist.trivy.GateScanResult
---@field ran boolean whether a scan ran (or a cached report was used)
---@field mode string
---@field report? hoist.trivy.Report
---@field verdict? hoist.policy.Verdict
---@field warning? string set when no scan ran in mode if_available: say it plainly in summaries
---@field sarif? string the SARIF file written (opts.sarif), also when the verdict fails

--- The scan stage pipelines use. mode "required" (default): no scanner raises policy_violation
--- (exit code 4); "if_available": no scanner logs a loud warning and returns ran=false with
--- `warning`; "off": nothing runs. When a scan runs, hoist.policy gates the full report
--- (unfixed findings and ignorefile entries are handled by the policy, not by trivy, so the
--- summary can show them) and a failing verdict raises policy_violation unless enforce=false.
---@class hoist.trivy.GateScanOptions: hoist.policy.Options
---@field image string
---@field digest? string
---@field mode? "required"|"if_available"|"off" default "required"
---@field ignorefile? string its vulnerability entries join `allow`
---@field timeout? number
---@field skip_db_update? boolean
---@field cache? boolean
---@field cache_dir? string
---@field enforce? boolean false: return a failing verdict instead of raising
---@field sarif? string write the scan's SARIF (trivy.sarif of the same report) to this file, before the verdict is enforced

---@param opts hoist.trivy.GateScanOptions
---@return hoist.trivy.GateScanResult
function M.gate_scan(opts)
  if type(opts) ~= "table" then fail("invalid_argument", "trivy.gate_scan: expected an options table") end
  local mode = opts.mode or "required"
  if not MODES[mode] then
    fail("invalid_argument", ("trivy.gate_scan: mode must be required, if_available or off, got %s"):format(
      tostring(mode)))
  end
  if mode == "off" then
    hoist.log.info("image scan is off: " .. tostring(opts.image) .. " is not scanned")
    return { ran = false, mode = mode }
  end
  local policy = require "hoist.policy"
  local allow = {}
  for _, a in ipairs(opts.allow or {}) do allow[#allow + 1] = a end
  if opts.ignorefile then
    for _, a in ipairs(policy.allow_from_ignorefile(opts.ignorefile)) do allow[#allow + 1] = a end
  end
  local gate_opts = { fail_on = opts.fail_on, ignore_unfixed = opts.ignore_unfixed, allow = allow }
  policy.options(gate_opts) -- bad policy options fail before anything runs

  local ok, report = pcall(M.scan, { image = opts.image, digest = opts.digest, timeout = opts.timeout,
    skip_db_update = opts.skip_db_update, cache = opts.cache, cache_dir = opts.cache_dir })
  if not ok then
    if not hoist.is_error(report, "tool_missing") then error(report, 0) end
    local reason = (report.details and report.details.reason) or report.message
    if mode == "required" then
      fail("policy_violation", ("image scan is required but no scanner is available (%s). To fix it: %s; "
        .. "or set the scan mode to if_available or off"):format(reason, HOW_TO),
        { exit_code = 4, reason = reason, image = opts.image })
    end
    local warning = ("NO IMAGE SCAN RAN: %s has not been checked for vulnerabilities because no scanner "
      .. "is available (%s); going on because the scan mode is if_available. To fix it: %s"):format(
      opts.image, reason, HOW_TO)
    hoist.log.event("trivy.skipped", warning, { image = opts.image, mode = mode }, "warn")
    return { ran = false, mode = mode, warning = warning }
  end
  if opts.sarif then
    M.sarif(report, { output = opts.sarif })
    hoist.log.event("trivy.sarif", ("trivy: SARIF of the scan of %s written to %s"):format(opts.image, opts.sarif),
      { image = opts.image, file = opts.sarif })
  end
  local verdict
  if opts.enforce == false then
    verdict = policy.gate(report, gate_opts)
  else
    verdict = policy.enforce(report, gate_opts)
  end
  return { ran = true, mode = mode, report = report, verdict = verdict, sarif = opts.sarif }
end

return M
