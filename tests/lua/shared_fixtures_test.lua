-- The conformance checks that read ../shared/fixtures, run with the folder missing
-- (HOIST_FIXTURES pointed at a path that does not exist): without CI=true each skips and says
-- so (tests/shared_fixtures.sh, the ctest shared-fixtures, exits 77 so the ctest summary shows
-- it); with CI=true each fails, since CI has the fixtures. One row per consumer: the ctest
-- itself, the C++ cases (tests/support/shared_fixtures.hpp), the Lua ones (support.skip_shared),
-- the Azure emulator's test_fixtures.py and the Kubernetes emulator's conformance group.
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

local ROOT = support.root
local MISSING = "/nonexistent/hoist-shared-fixtures"

-- hoist_tests beside the hoist executable (build/tests/hoist_tests), or HOIST_TESTS_BIN
local function hoist_tests()
  local bin = os.getenv("HOIST_TESTS_BIN")
  if bin and bin ~= "" then return bin end
  return (support.hoist_bin():match("^(.*)/[^/]*$") or ".") .. "/tests/hoist_tests"
end

-- the Kubernetes emulator's test file reads its environment when imported: a stand-in one
-- (nothing is contacted: the conformance group stops at the missing folder)
local function kube_env(dir)
  local ca = dir .. "/ca.pem"
  hoist.exec { "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
               "-subj", "/CN=hoist stand-in", "-days", "1", "-keyout", dir .. "/ca.key", "-out", ca, check = true }
  return { HOIST_TEST_KUBE_SERVER = "https://127.0.0.1:9", HOIST_TEST_KUBE_TOKEN = "x", HOIST_TEST_KUBE_VIEWER_TOKEN = "x",
           HOIST_TEST_KUBE_CONTROL = "https://127.0.0.1:9/_emulator", HOIST_TEST_CA = ca }
end

local KUBE = "import sys; sys.path.insert(0, sys.argv[1]); import test_kubectl as k; k.test_conformance(); "
  .. "print('%d failed' % k.failed); sys.exit(1 if k.failed else 0)"

-- argv (a function of a temp folder, for what needs files), the exit code and the words
-- expected without CI, then with CI=true
local rows = {
  { name = "ctest shared-fixtures (tests/shared_fixtures.sh)",
    argv = function() return { ROOT .. "/tests/shared_fixtures.sh" } end,
    plain = { 77, "skipped: ../shared/fixtures absent" }, ci = { 1, "CI=true: not skipping" } },
  { name = "C++ conformance cases (hoist_tests)",
    argv = function()
      return { hoist_tests(), "--no-colors", "-tc=*gitops-engine's health fixtures*,*reasons a rollout stops on*,"
               .. "*recorded Status bodies*,*recorded OCI and Docker manifests*" }
    end,
    plain = { 0, "skipped: ../shared/fixtures absent (" },
    ci = { 1, "CI=true: not skipping" }, count = 4 },
  { name = "Lua: json_test, yaml_test, policy_test",
    argv = function()
      return { support.hoist_bin(), "test", "--no-color", ROOT .. "/tests/lua/json_test.lua",
               ROOT .. "/tests/lua/yaml_test.lua", ROOT .. "/tests/lua/policy_test.lua" }
    end,
    plain = { 0, "skipped: ../shared/fixtures not found" }, ci = { 1, "CI=true: not skipping" }, count = 3 },
  { name = "Azure emulator test_fixtures.py",
    argv = function() return { "python3", ROOT .. "/tests/emulators/azure/test_fixtures.py" } end,
    plain = { 0, "skipped: ../shared/fixtures absent" }, ci = { 1, "CI=true: not skipping" } },
  { name = "Kubernetes emulator conformance (test_kubectl.py)",
    argv = function() return { "python3", "-c", KUBE, ROOT .. "/tests/emulators/kube" } end,
    env = kube_env,
    plain = { 0, "SKIP  conformance: skipped: ../shared/fixtures absent" }, ci = { 1, "CI=true: not skipping" } },
}

local function count(text, plain)
  local n, from = 0, 1
  while true do
    local i = text:find(plain, from, true)
    if not i then return n end
    n, from = n + 1, i + #plain
  end
end

for _, row in ipairs(rows) do
  t.case("a missing ../shared/fixtures: skipped without CI, failed with CI=true [" .. row.name .. "]", function()
    local dir = support.tmpdir("hoist-shared-fixtures")
    local env = row.env and row.env(dir) or {}
    env.HOIST_FIXTURES = MISSING
    for _, mode in ipairs { "plain", "ci" } do
      env.CI = mode == "ci" and "true" or "false"
      local argv = row.argv(dir)
      argv.env, argv.timeout = env, 300
      local r = hoist.exec(argv)
      local out = r.stdout .. r.stderr
      local want_code, words, n = row[mode][1], row[mode][2], count(out, row[mode][2])
      t.eq(r.code, want_code, ("%s (%s): exit %d\n%s"):format(row.name, mode, r.code, out:sub(-2000)))
      -- every check skipped, each saying so; under CI each failed (said at least once)
      t.ok(mode == "plain" and n == (row.count or 1) or mode == "ci" and n >= (row.count or 1),
           ("%s (%s): %d times %q\n%s"):format(row.name, mode, n, words, out:sub(-2000)))
    end
    hoist.exec { "rm", "-rf", dir }
  end, { timeout = 600 })
end
