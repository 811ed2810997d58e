-- hoist.policy: the gate (severities, ignore_unfixed, allow entries with reasons and expiry),
-- enforce, allow entries from Trivy ignore files, and the markdown summary. Reports come from
-- tests/fixtures/trivy (and ../shared/fixtures/trivy where it exists); no scanner runs here.
local t = require "hoist.test"
local policy = hoist.policy
local trivy = hoist.trivy

local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local OWN = support.root .. "/tests/fixtures/trivy"
local SHARED = support.SHARED .. "/trivy"
local read, exists = support.must_read, support.exists

local DEMO = trivy.parse(read(OWN .. "/hoist-demo.json"))
local CLEAN = trivy.parse(read(OWN .. "/hoist-clean.json"))
local NOW = policy.expiry_time("2024-06-15") -- a fixed "today" for expiry decisions

local function ids(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v.id end
  table.sort(out)
  return out
end

---------------------------------------------------------------- the gate

t.cases("gate: verdicts", {
  { name = "CRITICAL fails on both criticals", opts = { fail_on = { "CRITICAL" } },
    verdict = "fail", violations = { "CVE-2023-38545", "CVE-2023-45857" } },
  { name = "default fail_on is CRITICAL", opts = {}, verdict = "fail", violations = { "CVE-2023-38545", "CVE-2023-45857" } },
  { name = "ignore_unfixed leaves out axios (no fix)", opts = { fail_on = { "CRITICAL" }, ignore_unfixed = true },
    verdict = "fail", violations = { "CVE-2023-38545" }, unfixed = 4 },
  { name = "fail_on as a string, a set not a threshold", opts = { fail_on = "HIGH,MEDIUM", ignore_unfixed = true },
    verdict = "fail", violations = { "CVE-2022-24999", "CVE-2023-46218", "CVE-2023-5363" } },
  { name = "allowed with a reason", verdict = "pass", violations = {}, allowed = { "CVE-2023-38545" },
    opts = { ignore_unfixed = true, allow = { { id = "CVE-2023-38545", reason = "no SOCKS5 proxy", expires = "2024-07-01" } } } },
  { name = "allow limited to another package does not apply", verdict = "fail", violations = { "CVE-2023-38545" },
    opts = { ignore_unfixed = true, allow = { { id = "CVE-2023-38545", reason = "r", package = "libcurl" } } }, unused = 1 },
  { name = "allow matching the package", verdict = "pass", violations = {}, allowed = { "CVE-2023-38545" },
    opts = { ignore_unfixed = true, allow = { { id = "CVE-2023-38545", reason = "r", package = "curl" } } } },
  { name = "allow by path glob", verdict = "pass", violations = {}, allowed = { "CVE-2022-24999" },
    opts = { fail_on = "HIGH", ignore_unfixed = true, allow = {
      { id = "CVE-2022-24999", reason = "r", paths = { "**/package-lock.json" } },
      { id = "CVE-2023-5363", reason = "r", purls = { "pkg:apk/alpine/libcrypto3" } } } },
    -- the purl entry matches 5363 too
    allowed_more = { "CVE-2022-24999", "CVE-2023-5363" } },
  { name = "path glob that does not match", verdict = "fail", violations = { "CVE-2022-24999" },
    opts = { fail_on = "HIGH", ignore_unfixed = true, allow = {
      { id = "CVE-2022-24999", reason = "r", paths = { "web/*.json" } },
      { id = "CVE-2023-5363", reason = "r", purls = { "pkg:apk/alpine/libcrypto3@3.1.3-r0" } } } } },
  { name = "a clean report passes everything", report = CLEAN, opts = { fail_on = "LOW,MEDIUM,HIGH,CRITICAL,UNKNOWN" },
    verdict = "pass", violations = {} },
}, function(row)
  local opts = row.opts
  opts.now = NOW
  local r = policy.gate(row.report or DEMO, opts)
  t.eq(r.verdict, row.verdict)
  t.eq(ids(r.violations), row.violations)
  if row.allowed_more then t.eq(ids(r.allowed), row.allowed_more)
  elseif row.allowed then t.eq(ids(r.allowed), row.allowed) end
  if row.unfixed then t.eq(#r.unfixed, row.unfixed) end
  if row.unused then t.eq(#r.unused, row.unused) end
  t.eq(r.counts, (row.report or DEMO).counts)
end)

t.case("gate: an allowed finding keeps its reason and expiry", function()
  local r = policy.gate(DEMO, { ignore_unfixed = true, now = NOW,
    allow = { { id = "CVE-2023-38545", reason = "no SOCKS5 proxy", expires = "2024-07-01" } } })
  t.eq({ r.allowed[1].reason, r.allowed[1].expires, r.allowed[1].package }, { "no SOCKS5 proxy", "2024-07-01", "curl" })
end)

t.case("gate: an expired allow entry no longer allows, and says so", function()
  local r = policy.gate(DEMO, { ignore_unfixed = true, now = NOW,
    allow = { { id = "CVE-2023-38545", reason = "no SOCKS5 proxy", expires = "2024-01-01" },
              { id = "CVE-2099-0001", reason = "gone", expires = "2024-06-15" } } })
  t.eq(r.verdict, "fail")
  t.eq(ids(r.violations), { "CVE-2023-38545" })
  t.eq(r.violations[1].expired_allow, { id = "CVE-2023-38545", reason = "no SOCKS5 proxy", expires = "2024-01-01" })
  t.eq(#r.expired, 2)
  t.eq(r.expired[1].matched, 1)
  t.eq(r.expired[1].message,
    "allow entry for CVE-2023-38545 expired on 2024-01-01 (reason was: no SOCKS5 proxy); it no longer allows 1 finding")
  t.match(r.expired[2].message, "expired on 2024%-06%-15 .* no longer allows anything$")
end)

t.case("gate: expiry takes effect at 00:00 UTC of the date (as Trivy's exp:)", function()
  local at = policy.expiry_time("2024-06-15")
  t.eq(at, 1718409600)
  local entry = { { id = "CVE-2023-38545", reason = "r", expires = "2024-06-15" } }
  t.eq(policy.gate(DEMO, { ignore_unfixed = true, allow = entry, now = at - 1 }).verdict, "pass")
  t.eq(policy.gate(DEMO, { ignore_unfixed = true, allow = entry, now = at }).verdict, "fail")
end)

t.case("gate: takes Trivy's decoded JSON as well", function()
  local r = policy.gate(hoist.json.decode(read(OWN .. "/hoist-demo.json")), { fail_on = "CRITICAL" })
  t.eq(#r.violations, 2)
end)

t.cases("gate: bad options", {
  { name = "allow without reason", opts = { allow = { { id = "CVE-1" } } }, pattern = "allow%[1%] %(CVE%-1%) needs a reason" },
  { name = "blank reason", opts = { allow = { { id = "CVE-1", reason = "  " } } }, pattern = "needs a reason" },
  { name = "allow without id", opts = { allow = { { reason = "r" } } }, pattern = "allow%[1%] needs an id" },
  { name = "allow not a list", opts = { allow = "CVE-1" }, pattern = "allow must be a list" },
  { name = "bad month", opts = { allow = { { id = "C", reason = "r", expires = "2024-13-01" } } }, pattern = "is not a date" },
  { name = "no such day", opts = { allow = { { id = "C", reason = "r", expires = "2023-02-30" } } }, pattern = "no such day" },
  { name = "date format", opts = { allow = { { id = "C", reason = "r", expires = "01/02/2024" } } }, pattern = "use YYYY%-MM%-DD" },
  { name = "fail_on", opts = { fail_on = { "SEVERE" } }, pattern = "unknown severity SEVERE" },
  { name = "paths not a list", opts = { allow = { { id = "C", reason = "r", paths = "x" } } }, pattern = "paths must be a list" },
  { name = "report", report = "nope", opts = {}, pattern = "expected a report" },
}, function(row)
  t.raises(function() policy.gate(row.report or DEMO, row.opts) end, "invalid_argument", row.pattern)
end)

---------------------------------------------------------------- enforce

t.case("enforce: raises policy_violation with the evidence and exit code 4", function()
  local err = t.raises(function() policy.enforce(DEMO, { fail_on = { "CRITICAL" }, now = NOW }) end, "policy_violation",
    "image policy failed: 2 findings at CRITICAL: CVE%-2023%-38545 %(curl 8%.3%.0%-r0, fixed in 8%.4%.0%-r0%), "
      .. "CVE%-2023%-45857 %(axios 0%.27%.2, no fix yet%)")
  t.eq(err.details.exit_code, 4)
  t.eq(#err.details.violations, 2)
  t.eq(err.details.counts.CRITICAL, 2)
end)

t.case("enforce: returns the verdict when it passes", function()
  local r = policy.enforce(DEMO, { fail_on = "CRITICAL", ignore_unfixed = true, now = NOW,
    allow = { { id = "CVE-2023-38545", reason = "r" } } })
  t.eq(r.verdict, "pass")
end)

t.case("enforce: more than five violations are summarised", function()
  t.raises(function()
    policy.enforce(DEMO, { fail_on = "CRITICAL,HIGH,MEDIUM,LOW,UNKNOWN" })
  end, "policy_violation", "9 findings at CRITICAL/HIGH/MEDIUM/LOW/UNKNOWN: .*, and 4 more")
end)

---------------------------------------------------------------- ignore files as allow entries

t.case("allow_from_ignorefile: hoist's own files", function()
  local plain = policy.allow_from_ignorefile(OWN .. "/demo.trivyignore")
  t.eq(#plain, 3)
  t.match(plain[1].reason, "^listed in .*demo%.trivyignore$")
  t.eq(plain[1].expires, "2999-12-31")
  local yaml = policy.allow_from_ignorefile(OWN .. "/demo.trivyignore.yaml")
  t.eq(#yaml, 4, "vulnerability entries only")
  local r = policy.gate(DEMO, { fail_on = "CRITICAL,HIGH", ignore_unfixed = true, allow = yaml, now = NOW })
  t.eq(ids(r.allowed), { "CVE-2022-24999", "CVE-2023-46218", "CVE-2023-5363" })
  t.eq(ids(r.violations), { "CVE-2023-38545" })
  t.eq(r.expired[1].source, OWN .. "/demo.trivyignore.yaml: vulnerabilities[2]")
end)

t.case("allow_from_ignorefile: Trivy's examples", function()
  if not exists(SHARED) then support.skip_shared() end
  local plain = policy.allow_from_ignorefile(SHARED .. "/trivyignore.example")
  t.eq(#plain, 9) -- a plain file does not say which kind of finding an id is
  local yaml = policy.allow_from_ignorefile(SHARED .. "/trivyignore.yaml.example")
  t.eq(ids(yaml), { "CVE-2019-0001", "CVE-2019-0002", "CVE-2019-0003", "CVE-2019-0004", "CVE-2019-0005",
    "CVE-2019-0006", "CVE-2019-0007" })
  local r = policy.gate(DEMO, { allow = yaml, now = NOW })
  t.eq(#r.expired, 2) -- 0005 (2023-01-01) and 0006 (2020-01-01)
end)

---------------------------------------------------------------- markdown

t.case("markdown: verdict, counts, top findings by severity", function()
  local v = policy.gate(DEMO, { fail_on = "CRITICAL", ignore_unfixed = true, now = NOW,
    allow = { { id = "CVE-2023-5363", reason = "not | reachable", expires = "2024-07-01" },
              { id = "CVE-2023-6237", reason = "old", expires = "2024-01-01" } } })
  local md = policy.markdown(DEMO, v, { top = 3 })
  t.match(md, "^### Image scan: `hoist%-demo:1`\n")
  t.match(md, "%*%*FAIL%*%*: 1 finding at CRITICAL violate the policy%.")
  t.match(md, "\n| CRITICAL | HIGH | MEDIUM | LOW | UNKNOWN | Total |\n|%-%-%-:|")
  t.match(md, "\n| 2 | 3 | 2 | 1 | 1 | 9 |\n")
  t.match(md, "#### Top findings %(3 of 9%)")
  t.match(md, "| ID | Package | Installed | Fixed | Severity | Title |")
  t.match(md, "\n| %[CVE%-2023%-38545%]%(https://avd%.aquasec%.com/nvd/cve%-2023%-38545%) | curl | 8%.3%.0%-r0 | 8%.4%.0%-r0 | CRITICAL | curl: heap")
  t.match(md, "| axios | 0%.27%.2 | no fix | CRITICAL |")
  t.no_match(md, "CVE-2023-6237 |", "only the top 3 rows")
  t.match(md, "%- CVE%-2023%-5363 in libcrypto3: not \\| reachable %(until 2024%-07%-01%)")
  t.match(md, "#### Expired allow entries\n\n%- allow entry for CVE%-2023%-6237 expired on 2024%-01%-01")
  t.match(md, "4 findings without a fix were not counted")
  t.match(md, "Digest: `sha256:0d5e")
end)

t.case("markdown: a passing verdict and a report alone", function()
  local v = policy.gate(CLEAN, {})
  local md = policy.markdown(CLEAN, v)
  t.match(md, "%*%*PASS%*%*: no unallowed finding at CRITICAL%.")
  t.no_match(md, "Top findings")
  local plain = policy.markdown(DEMO)
  t.no_match(plain, "PASS")
  t.match(plain, "Top findings %(9 of 9%)")
end)

t.case("markdown: a gate_scan result", function()
  local v = policy.gate(DEMO, { ignore_unfixed = true, allow = { { id = "CVE-2023-38545", reason = "r" } } })
  local md = policy.markdown({ ran = true, mode = "required", report = DEMO, verdict = v }, nil, { title = "Scan" })
  t.match(md, "^### Scan: `hoist%-demo:1`")
  t.match(md, "%*%*PASS%*%*")
  t.match(policy.markdown({ ran = false, mode = "off" }), "%*%*NO SCAN RAN%*%*: the scan mode is off")
end)
