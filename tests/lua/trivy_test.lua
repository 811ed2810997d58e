-- hoist.trivy: report parsing (conformance over every recorded Trivy golden), ignore files,
-- scans through the stand-in scanner tests/tools/trivy (flags, cache, failures), the docker
-- fallback through a fake docker, SARIF pass-through and the scan modes of gate_scan.
local t = require "hoist.test"
local trivy = hoist.trivy

local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local ROOT = support.root
local STANDIN = ROOT .. "/tests/tools/trivy"
local OWN = ROOT .. "/tests/fixtures/trivy"
local SHARED = support.SHARED .. "/trivy"

local read, write, exists = support.must_read, support.write, support.exists
local function shared(name) return support.shared("trivy/" .. name) end
local function tmpdir() return support.tmpdir("hoist-trivy-test") end

local function lines(path)
  local out = {}
  if not exists(path) then return out end
  for l in read(path):gmatch("[^\n]+") do out[#out + 1] = hoist.json.decode(l) end
  return out
end

-- Runs fn with the stand-in as the scanner ($HOIST_TRIVY) and a fresh cache folder;
-- fn(dir, argv_log). `env` is more environment for the stand-in; `vars` more fake env vars.
local function with_standin(fn, env, vars)
  local dir = tmpdir()
  local saved = trivy.hooks
  local log = dir .. "/argv.jsonl"
  local child_env = { HOIST_TRIVY_ARGV_LOG = log }
  for k, v in pairs(env or {}) do child_env[k] = v end
  local fake = { HOIST_TRIVY = STANDIN }
  for k, v in pairs(vars or {}) do fake[k] = v end
  trivy.hooks = {
    getenv = function(k) if fake[k] ~= nil then return fake[k] or nil end return nil end,
    which = function() return nil end,
    env = child_env,
  }
  local ok, err = pcall(fn, dir, log)
  trivy.hooks = saved
  hoist.exec { "rm", "-rf", dir }
  if not ok then error(err, 0) end
end

local function ids(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v.id end
  table.sort(out)
  return out
end

---------------------------------------------------------------- parsing

t.case("parse: every recorded golden, counts checked against the raw JSON", function()
  if not exists(SHARED) then support.skip_shared() end
  local files = hoist.exec({ "find", SHARED, "-name", "*.json.golden" }).stdout
  local n = 0
  for path in files:gmatch("[^\n]+") do
    local text = read(path)
    local raw = hoist.json.decode(text)
    -- the independent count: straight from Results[].Vulnerabilities[].Severity
    local want, total = { CRITICAL = 0, HIGH = 0, MEDIUM = 0, LOW = 0, UNKNOWN = 0 }, 0
    for _, r in ipairs(type(raw.Results) == "table" and raw.Results or {}) do
      for _, v in ipairs(type(r.Vulnerabilities) == "table" and r.Vulnerabilities or {}) do
        want[v.Severity] = want[v.Severity] + 1
        total = total + 1
      end
    end
    local report = trivy.parse(text)
    t.eq(report.counts, want, path)
    t.eq(report.total, total, path)
    t.eq(report.artifact, raw.ArtifactName, path)
    t.eq(#trivy.findings(report), total, path)
    n = n + 1
  end
  t.ok(n >= 6, "found the recorded goldens (" .. n .. ")")
end)

t.case("parse: fields of a recorded finding (alpine-310)", function()
  local r = trivy.parse(read(shared("alpine-310.json.golden")))
  t.eq(r.artifact_type, "container_image")
  t.eq(r.os, "alpine 3.10.2")
  t.eq(r.image_id, "sha256:961769676411f082461f9ef46626dd7a2d1e2b2a38e6a44364bcbecf51e66dd4")
  local v = r.targets[1].vulnerabilities[1]
  t.eq({ v.id, v.package, v.installed, v.fixed, v.severity, v.status },
    { "CVE-2019-1549", "libcrypto1.1", "1.1.1c-r0", "1.1.1d-r0", "MEDIUM", "fixed" })
  t.eq(v.title, "openssl: information disclosure in fork()")
  t.eq(v.url, "https://avd.aquasec.com/nvd/cve-2019-1549")
  t.eq(r.targets[1].class, "os-pkgs")
  t.eq(r.targets[1].type, "alpine")
end)

t.case("parse: hoist's own fixture: every severity, unfixed findings, digest", function()
  local r = trivy.parse(read(OWN .. "/hoist-demo.json"))
  t.eq(r.counts, { CRITICAL = 2, HIGH = 3, MEDIUM = 2, LOW = 1, UNKNOWN = 1 })
  t.eq(r.total, 9)
  t.eq(r.digest, "sha256:0d5e1a9c3b7f2e4d6a8c0b2e4f6a8c0e2d4f6a8b0c2e4d6f8a0b2c4e6d8f0a2c")
  local f = trivy.findings(r)
  t.eq({ f[1].severity, f[1].id }, { "CRITICAL", "CVE-2023-38545" })
  t.eq({ f[2].id, f[2].fixed, f[2].status, f[2].target }, { "CVE-2023-45857", nil, "affected", "app/package-lock.json" })
  t.eq(f[#f].severity, "UNKNOWN")
  local clean = trivy.parse(read(OWN .. "/hoist-clean.json"))
  t.eq(clean.total, 0)
  t.eq(#clean.targets, 1)
end)

t.cases("parse: bad input", {
  { name = "not JSON", input = "{nope", pattern = "not a JSON report" },
  { name = "schema 1", input = '{"SchemaVersion": 1, "Results": []}', pattern = "SchemaVersion 1" },
  { name = "no schema", input = "[]", pattern = "SchemaVersion nil" },
  { name = "a number", input = 42, pattern = "expected a report" },
}, function(row)
  t.raises(function() trivy.parse(row.input) end, "invalid_argument", row.pattern)
end)

---------------------------------------------------------------- ignore files

t.case("ignorefile: Trivy's plain example", function()
  local e = trivy.ignorefile(shared("trivyignore.example"))
  t.eq(ids(e), { "AVD-ID400", "CVE-2019-0001", "CVE-2019-0002", "CVE-2019-0004", "CVE-2019-0005",
    "CVE-2019-0006", "GPL-3.0", "ID300", "generic-unwanted-rule" })
  local by = {}
  for _, x in ipairs(e) do by[x.id] = x end
  t.eq(by["CVE-2019-0004"].expires, "2020-01-01")
  t.eq(by["CVE-2019-0006"].expires, "9999-01-01") -- other key:value fields are ignored
  t.eq(by["CVE-2019-0001"].expires, nil)
  t.match(by["CVE-2019-0001"].where, "trivyignore%.example:2$")
end)

t.case("ignorefile: Trivy's YAML example", function()
  local e = trivy.ignorefile(shared("trivyignore.yaml.example"))
  local by = {}
  for _, x in ipairs(e) do by[x.kind .. ":" .. x.id] = x end
  t.eq(#e, 7 + 4 + 3 + 5)
  t.eq(by["vulnerability:CVE-2019-0001"].paths, { "**/*-lock.json" })
  t.eq(by["vulnerability:CVE-2019-0005"].expires, "2023-01-01")
  t.eq(by["vulnerability:CVE-2019-0006"].expires, "2020-01-01")
  t.eq(by["vulnerability:CVE-2019-0007"].purls, { "pkg:golang/github.com/aquasecurity/aaa@9.9.9",
    "pkg:golang/github.com/aquasecurity/bar" })
  t.ok(by["misconfiguration:AVD-ID400"] and by["secret:generic-unwanted-rule2"] and by["license:MIT"])
end)

t.case("ignorefile: hoist's own files, both formats", function()
  local plain = trivy.ignorefile(OWN .. "/demo.trivyignore")
  t.eq(ids(plain), { "CVE-2023-38545", "CVE-2023-5363", "CVE-2023-6237" })
  local yaml = trivy.ignorefile(OWN .. "/demo.trivyignore.yaml")
  local stmt = {}
  for _, x in ipairs(yaml) do stmt[x.id] = x.statement end
  t.eq(stmt["CVE-2023-5363"], "openssl is not reachable from the app's code paths")
end)

t.cases("ignorefile: errors", {
  { name = "missing file", text = nil, code = "not_found", pattern = "no such file" },
  { name = "bad plain date", text = "CVE-1 exp:tomorrow\n", code = "invalid_argument", pattern = ":1: cannot read the expiry date" },
  { name = "bad YAML date", text = "vulnerabilities:\n  - id: CVE-1\n    expired_at: soon\n", ext = ".yaml",
    code = "invalid_argument", pattern = "vulnerabilities%[1%]: cannot read the expiry date" },
  { name = "YAML item without id", text = "vulnerabilities:\n  - statement: x\n", ext = ".yaml",
    code = "invalid_argument", pattern = "needs an id" },
  { name = "not YAML", text = "vulnerabilities: [\n", ext = ".yaml", code = "invalid_argument", pattern = "not valid YAML" },
}, function(row)
  local dir = tmpdir()
  local path = dir .. "/ignore" .. (row.ext or "")
  if row.text then write(path, row.text) end
  t.raises(function() trivy.ignorefile(path) end, row.code, row.pattern)
  hoist.exec { "rm", "-rf", dir }
end)

---------------------------------------------------------------- scanning

t.case("scan: runs trivy image --format json --quiet and normalizes the report", function()
  with_standin(function(dir, log)
    local r = trivy.scan { image = "127.0.0.1:5000/hoist-demo:1", cache_dir = dir }
    t.eq(r.counts, { CRITICAL = 2, HIGH = 3, MEDIUM = 2, LOW = 1, UNKNOWN = 1 })
    t.eq(r.artifact, "127.0.0.1:5000/hoist-demo:1")
    t.eq(r.cached, false)
    t.eq(r.scanner, "binary")
    local argv = lines(log)[1].argv
    t.eq(argv, { "image", "--format", "json", "--quiet", "--timeout", "300s", "127.0.0.1:5000/hoist-demo:1" })
  end)
end)

t.case("scan: severity, ignore_unfixed, ignorefile, timeout and skip_db_update reach trivy", function()
  with_standin(function(dir, log)
    local r = trivy.scan { image = "hoist-demo:1", severity = { "high", "CRITICAL" }, ignore_unfixed = true,
      ignorefile = OWN .. "/demo.trivyignore", timeout = 90, skip_db_update = true, cache_dir = dir }
    -- unfixed gone, HIGH/CRITICAL only, CVE-2023-5363 ignored by the file (38545's entry expired)
    t.eq(ids(trivy.findings(r)), { "CVE-2022-24999", "CVE-2023-38545" })
    t.eq(r.counts, { CRITICAL = 1, HIGH = 1, MEDIUM = 0, LOW = 0, UNKNOWN = 0 })
    t.eq(lines(log)[1].argv, { "image", "--format", "json", "--quiet", "--severity", "HIGH,CRITICAL",
      "--ignore-unfixed", "--ignorefile", OWN .. "/demo.trivyignore", "--timeout", "90s", "--skip-db-update",
      "hoist-demo:1" })
  end)
end)

t.case("scan: the recorded upstream report through the stand-in", function()
  shared("alpine-310.json.golden")
  with_standin(function(dir)
    local r = trivy.scan { image = "ghcr.io/aquasecurity/trivy-test-images:alpine-310", cache_dir = dir }
    t.eq(r.counts.MEDIUM, 4)
    t.eq(r.total, 4)
  end)
end)

t.case("scan: cached by digest and options, reused, skipped with cache=false", function()
  with_standin(function(dir, log)
    local digest = "sha256:" .. ("ab"):rep(32)
    local a = trivy.scan { image = "hoist-demo:1", digest = digest, cache_dir = dir }
    t.ok(exists(dir .. "/trivy/" .. digest .. ".json"), "cache file by digest")
    local b = trivy.scan { image = "hoist-demo:1", digest = digest, cache_dir = dir }
    t.eq({ a.cached, b.cached }, { false, true })
    t.eq(b.counts, a.counts)
    t.eq(#lines(log), 1, "the second scan did not run trivy")
    local c = trivy.scan { image = "hoist-demo:1", digest = digest, cache_dir = dir, severity = "CRITICAL" }
    t.eq({ c.cached, c.total }, { false, 2 })
    local d = trivy.scan { image = "hoist-demo:1", digest = digest, cache_dir = dir, severity = "CRITICAL", cache = false }
    t.eq(d.cached, false)
    -- pinned by digest in the reference: the same cache key
    local e = trivy.scan { image = "hoist-demo@" .. digest, cache_dir = dir, severity = "CRITICAL" }
    t.eq(e.cached, true)
    t.eq(#lines(log), 3)
  end)
end)

t.case("scan: an unknown flag is rejected by the stand-in the way trivy does", function()
  local r = hoist.exec { STANDIN, "image", "--format", "json", "--no-such-flag", "x" }
  t.eq(r.code, 1)
  t.match(r.stderr, "FATAL.-unknown flag: %-%-no%-such%-flag")
  r = hoist.exec { STANDIN, "image", "-Z", "x" }
  t.match(r.stderr, "unknown shorthand flag: 'Z' in %-Z")
end)

t.cases("scan: trivy failures", {
  { name = "trivy fails", env = { HOIST_TRIVY_FAIL = "init error: DB error: failed to download vulnerability DB" },
    code = "tool_failed", pattern = "exit 1%): init error: DB error: failed to download" },
  { name = "scan deadline", env = { HOIST_TRIVY_DELAY = "3" }, timeout = 1, code = "tool_failed",
    pattern = "context deadline exceeded" },
  { name = "unknown image", image = "nothing-like-it:1", code = "tool_failed", pattern = "unable to find the specified image" },
}, function(row)
  with_standin(function(dir)
    local err = t.raises(function()
      trivy.scan { image = row.image or "hoist-demo:1", cache_dir = dir, timeout = row.timeout }
    end, row.code, row.pattern)
    t.eq(err.details.status, 1)
    t.ok(err.details.argv[1] == STANDIN)
  end, row.env)
end)

t.cases("scan: bad options", {
  { name = "no image", opts = {}, pattern = "'image'" },
  { name = "flag as image", opts = { image = "--help" }, pattern = "must not start with" },
  { name = "bad severity", opts = { image = "x", severity = "SEVERE" }, pattern = "unknown severity SEVERE" },
  { name = "bad digest", opts = { image = "x", digest = "abc" }, pattern = "digest must look like" },
  { name = "bad timeout", opts = { image = "x", timeout = -1 }, pattern = "timeout" },
}, function(row)
  t.raises(function() trivy.scan(row.opts) end, "invalid_argument", row.pattern)
end)

---------------------------------------------------------------- no scanner / docker fallback

t.case("scan: no scanner at all -> tool_missing naming both fixes", function()
  with_standin(function()
    t.raises(function() trivy.scan { image = "hoist-demo:1", cache = false } end, "tool_missing",
      "HOIST_TRIVY.*aquasec/trivy")
  end, nil, { HOIST_TRIVY = false })
end)

t.case("scan: HOIST_TRIVY naming a missing program", function()
  with_standin(function()
    t.raises(function() trivy.scan { image = "hoist-demo:1", cache = false } end, "tool_missing",
      "HOIST_TRIVY=/nope/trivy: no such program")
  end, nil, { HOIST_TRIVY = "/nope/trivy" })
end)

-- A fake docker: `image ls` lists the trivy image when it is "loaded"; `run ... IMAGE args`
-- runs the stand-in with the args after the image.
local FAKE_DOCKER = [==[#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as f:
    f.write(json.dumps({"argv": args}) + "\n")
if args[:2] == ["image", "ls"]:
    if os.environ.get("FAKE_DOCKER_HAS_TRIVY") == "1":
        print("aquasec/trivy:0.50.0\naquasec/trivy:latest")
    sys.exit(0)
if args[0] == "run":
    i = args.index("aquasec/trivy:latest")
    mounts = {}  # the container sees a mounted file at its destination: map it back
    for j, a in enumerate(args[:i]):
        if a == "-v":
            src, dst = args[j + 1].split(":")[:2]
            mounts[dst] = src
    rest = [mounts.get(a, a) for a in args[i + 1:]]
    os.execv(os.environ["STANDIN"], [os.environ["STANDIN"]] + rest)
sys.exit(2)
]==]

t.case("scan: falls back to the aquasec/trivy image in the local docker engine", function()
  with_standin(function(dir, log)
    local fake = dir .. "/docker"
    write(fake, FAKE_DOCKER)
    hoist.exec { "chmod", "+x", fake }
    local base = trivy.hooks.getenv
    trivy.hooks.getenv = function(k) if k == "HOIST_DOCKER_BIN" then return fake end return base(k) end
    trivy.hooks.env.FAKE_DOCKER_LOG = dir .. "/docker.jsonl"
    trivy.hooks.env.STANDIN = STANDIN
    trivy.hooks.env.FAKE_DOCKER_HAS_TRIVY = "1"
    local r = trivy.scan { image = "hoist-demo:1", ignorefile = OWN .. "/demo.trivyignore.yaml", cache_dir = dir }
    t.eq(r.scanner, "docker")
    t.eq(r.total, 6) -- 3 findings ignored by the YAML file inside the container (one entry expired)
    local calls = lines(dir .. "/docker.jsonl")
    t.eq(calls[1].argv, { "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "aquasec/trivy" })
    local run = table.concat(calls[2].argv, " ")
    t.match(run, "^run %-%-rm %-%-network host %-v /var/run/docker%.sock:/var/run/docker%.sock ", run)
    t.match(run, "%-v " .. dir:gsub("%p", "%%%0") .. "/trivy%-db:/root/%.cache/trivy", "DB cache mounted")
    t.match(run, "demo%.trivyignore%.yaml:/hoist/trivyignore%.yaml:ro aquasec/trivy:latest image %-%-format json")
    t.match(run, "%-%-ignorefile /hoist/trivyignore%.yaml")
    t.eq(lines(log)[1].argv[#lines(log)[1].argv], "hoist-demo:1")

    trivy.hooks.env.FAKE_DOCKER_HAS_TRIVY = "0"
    t.raises(function() trivy.scan { image = "hoist-demo:1", cache = false } end, "tool_missing",
      "no aquasec/trivy image.*To fix it: install trivy")
  end, nil, { HOIST_TRIVY = false })
end)

---------------------------------------------------------------- SARIF

-- Issue 15 §5: the gate and the SARIF from a single scan: a report's SARIF is `trivy convert`
-- of that scan's JSON, not a second `trivy image`.
t.case("sarif: trivy's own SARIF of a report, converted from the same scan (no second scan)", function()
  with_standin(function(dir, log)
    local digest = "sha256:" .. ("cd"):rep(32)
    local report = trivy.scan { image = "hoist-demo:1", digest = digest, cache_dir = dir }
    local out = dir .. "/scan.sarif"
    local sarif = trivy.sarif(report, { output = out })
    t.eq(sarif, read(OWN .. "/hoist-demo.sarif"))
    t.eq(read(out), sarif)
    local calls = lines(log)
    t.eq(#calls, 2)
    t.eq(calls[1].argv[1], "image")
    t.eq({ calls[2].argv[1], calls[2].argv[2], calls[2].argv[3] }, { "convert", "--format", "sarif" })
  end)
end)

t.case("sarif: from scan options, trivy image --format sarif, cached", function()
  with_standin(function(dir, log)
    local digest = "sha256:" .. ("ce"):rep(32)
    local opts = { image = "hoist-demo:1", digest = digest, cache_dir = dir }
    local sarif = trivy.sarif(opts)
    t.eq(sarif, read(OWN .. "/hoist-demo.sarif"))
    t.eq(lines(log)[1].argv[3], "sarif")
    t.eq(trivy.sarif(opts), sarif)
    t.eq(#lines(log), 1, "the second SARIF came from the cache")
    t.ok(exists(dir .. "/trivy/" .. digest .. ".sarif.json"))
  end)
end)

t.case("gate_scan: sarif is written from the gate's scan, also when the verdict fails", function()
  with_standin(function(dir, log)
    local out = dir .. "/gate.sarif"
    t.raises(function()
      trivy.gate_scan { image = "hoist-demo:1", cache_dir = dir, fail_on = { "CRITICAL" }, sarif = out }
    end, "policy_violation", "2 findings at CRITICAL")
    t.eq(read(out), read(OWN .. "/hoist-demo.sarif"))
    local n = 0
    for _, c in ipairs(lines(log)) do if c.argv[1] == "image" then n = n + 1 end end
    t.eq(n, 1, "one scan")
  end)
end)

t.case("sarif: the recorded upstream SARIF (alpine-310)", function()
  local golden = read(shared("alpine-310.sarif.golden"))
  with_standin(function(dir)
    t.eq(trivy.sarif { image = "alpine-310", cache_dir = dir }, golden)
  end)
end)

---------------------------------------------------------------- gate_scan

t.case("gate_scan: mode off runs nothing", function()
  with_standin(function(dir, log)
    local r = trivy.gate_scan { image = "hoist-demo:1", mode = "off" }
    t.eq(r, { ran = false, mode = "off" })
    t.eq(#lines(log), 0)
  end)
end)

t.case("gate_scan: required without a scanner -> policy_violation, exit code 4, how to fix", function()
  with_standin(function()
    local err = t.raises(function() trivy.gate_scan { image = "hoist-demo:1", cache = false } end,
      "policy_violation", "scan is required but no scanner is available")
    t.eq(err.details.exit_code, 4)
    t.match(err.message, "install trivy")
    t.match(err.message, "aquasec/trivy")
  end, nil, { HOIST_TRIVY = false })
end)

t.case("gate_scan: if_available without a scanner -> a loud warning, ran = false", function()
  with_standin(function()
    local r = trivy.gate_scan { image = "hoist-demo:1", mode = "if_available", cache = false }
    t.eq(r.ran, false)
    t.match(r.warning, "^NO IMAGE SCAN RAN: hoist%-demo:1 has not been checked")
    t.match(hoist.policy.markdown(r), "%*%*NO SCAN RAN%*%*: NO IMAGE SCAN RAN")
  end, nil, { HOIST_TRIVY = false })
end)

t.case("gate_scan: a failing verdict raises; allow entries and the ignore file let it pass", function()
  with_standin(function(dir)
    local err = t.raises(function()
      trivy.gate_scan { image = "hoist-demo:1", cache_dir = dir, fail_on = { "CRITICAL" } }
    end, "policy_violation", "2 findings at CRITICAL")
    t.eq(err.details.exit_code, 4)
    t.eq(ids(err.details.violations), { "CVE-2023-38545", "CVE-2023-45857" })

    local r = trivy.gate_scan { image = "hoist-demo:1", cache_dir = dir, fail_on = { "CRITICAL" }, ignore_unfixed = true,
      allow = { { id = "CVE-2023-38545", reason = "SOCKS5 is not used", expires = "2999-01-01" } } }
    t.eq({ r.ran, r.verdict.verdict }, { true, "pass" })
    t.eq(r.report.total, 9, "the policy, not trivy, leaves out unfixed findings")
    t.eq(#r.verdict.unfixed, 4)

    -- the YAML ignore file's 38545 entry has expired: it no longer allows
    err = t.raises(function()
      trivy.gate_scan { image = "hoist-demo:1", cache_dir = dir, ignore_unfixed = true,
        ignorefile = OWN .. "/demo.trivyignore.yaml" }
    end, "policy_violation", "CVE%-2023%-38545.*expired 2020%-01%-01")
    t.eq(err.details.expired[1].id, "CVE-2023-38545")

    local v = trivy.gate_scan { image = "hoist-demo:1", cache_dir = dir, enforce = false }
    t.eq(v.verdict.verdict, "fail")
  end)
end)

t.cases("gate_scan: bad options fail before scanning", {
  { name = "mode", opts = { image = "x", mode = "sometimes" }, pattern = "mode must be" },
  { name = "allow without reason", opts = { image = "x", allow = { { id = "CVE-1" } } }, pattern = "needs a reason" },
  { name = "fail_on", opts = { image = "x", fail_on = { "BAD" } }, pattern = "unknown severity BAD" },
}, function(row)
  with_standin(function(dir, log)
    t.raises(function() trivy.gate_scan(row.opts) end, "invalid_argument", row.pattern)
    t.eq(#lines(log), 0)
  end)
end)

---------------------------------------------------------------- the real docker engine

local function need_docker() support.need_docker("docker integration test") end

-- The real environment, except that trivy is never found on PATH or in $HOIST_TRIVY.
local function real_hooks(extra)
  return {
    getenv = function(k)
      if k == "HOIST_TRIVY" then return nil end
      if extra and extra[k] then return extra[k] end
      return os.getenv(k)
    end,
    which = function(name) if name == "trivy" then return nil end return hoist.which(name) end,
  }
end

t.case("docker: an engine without the trivy image is no scanner, and says so", function()
  need_docker()
  local saved = trivy.hooks
  trivy.hooks = real_hooks { HOIST_TRIVY_IMAGE = "hoist-test/no-such-trivy" }
  local ok, s, why = pcall(trivy.scanner)
  trivy.hooks = saved
  t.ok(ok, tostring(s))
  t.eq(s, nil)
  t.eq(why, "trivy is not on PATH and the local docker engine has no hoist-test/no-such-trivy image")
end)

-- A "trivy image" built from the busybox base: it checks what hoist mounts and prints the
-- recorded report, so the real `docker run` command line is exercised end to end.
local FAKE_ENTRYPOINT = [[#!/bin/sh
[ "$1" = image ] || { echo "FATAL Fatal error unknown command $1" >&2; exit 1; }
[ -S /var/run/docker.sock ] || { echo "FATAL Fatal error no docker socket mounted" >&2; exit 1; }
[ -d /root/.cache/trivy ] || { echo "FATAL Fatal error no DB cache mounted" >&2; exit 1; }
for a in "$@"; do last="$a"; done
case " $* " in
  *" --ignorefile /hoist/trivyignore "*) [ -f /hoist/trivyignore ] || { echo "FATAL Fatal error ignorefile not mounted" >&2; exit 1; } ;;
esac
case " $* " in *" --format json --quiet "*) cat /report.json ;; *) echo "FATAL Fatal error unexpected $*" >&2; exit 1 ;; esac
]]

t.case("docker: scans through a trivy image in the real engine", function()
  need_docker()
  local dir = tmpdir()
  local tag = ("hoist-test/fake-trivy:%d%04d"):format(os.time(), math.random(0, 9999))
  write(dir .. "/Dockerfile", ("FROM %s\nCOPY report.json /report.json\nCOPY entry.sh /entry.sh\n"
    .. "ENTRYPOINT [\"/bin/sh\", \"/entry.sh\"]\n"):format(os.getenv("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"))
  write(dir .. "/report.json", read(OWN .. "/hoist-demo.json"))
  write(dir .. "/entry.sh", FAKE_ENTRYPOINT)
  local b = hoist.exec { "docker", "build", "-q", "-t", tag, dir, timeout = 300 }
  t.eq(b.code, 0, b.stderr)
  local saved = trivy.hooks
  trivy.hooks = real_hooks { HOIST_TRIVY_IMAGE = tag }
  local ok, r = pcall(trivy.scan, { image = "hoist-demo:1", cache_dir = dir .. "/cache",
    ignorefile = OWN .. "/demo.trivyignore" })
  trivy.hooks = saved
  hoist.exec { "docker", "rmi", "-f", tag }
  hoist.exec { "rm", "-rf", dir }
  if not ok then error(r, 0) end
  t.eq(r.scanner, "docker")
  t.eq(r.total, 9)
  t.eq(r.artifact, "hoist-demo:1")
end)
