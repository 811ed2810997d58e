-- hoist.tags: tag strategies, the Docker tag grammar and the `latest` policy.
local t = require "hoist.test"
local tags = hoist.tags

local clean = { sha = "0123456789abcdef0123456789abcdef01234567", short_sha = "0123456", dirty = false }
local function info(extra)
  local out = {}
  for k, v in pairs(clean) do out[k] = v end
  for k, v in pairs(extra or {}) do out[k] = v end
  return out
end

t.cases("validate accepts Docker's tag grammar", {
  { name = "sha", tag = "0123456" },
  { name = "semver", tag = "1.2.3" },
  { name = "underscore first", tag = "_x" },
  { name = "dots and dashes", tag = "prod-20260406.1" },
  { name = "128 chars", tag = ("a"):rep(128) },
}, function(row)
  t.eq(tags.validate(row.tag), true)
end)

t.cases("validate rejects with a reason", {
  { name = "empty", tag = "", why = "must not be empty" },
  { name = "leading dot", tag = ".x", why = "must start with" },
  { name = "leading dash", tag = "-x", why = "must start with" },
  { name = "plus", tag = "1.0.0+b", why = "holds \"%+\" at position 6" },
  { name = "slash", tag = "feature/x", why = "holds \"/\"" },
  { name = "colon", tag = "a:b", why = "holds \":\"" },
  { name = "129 chars", tag = ("a"):rep(129), why = "at most 128" },
  { name = "not a string", tag = 12, why = "must be a string" },
}, function(row)
  local ok, why = tags.validate(row.tag)
  t.eq(ok, false)
  t.match(why, row.why)
end)

t.cases("parse_semver", {
  { name = "v prefix", tag = "v1.2.3", want = { 1, 2, 3, nil, nil, "1.2.3" } },
  { name = "bare", tag = "10.20.30", want = { 10, 20, 30, nil, nil, "10.20.30" } },
  { name = "prerelease", tag = "v2.0.0-rc.1", want = { 2, 0, 0, "rc.1", nil, "2.0.0-rc.1" } },
  { name = "build", tag = "v2.0.0+exp.sha.5114f85", want = { 2, 0, 0, nil, "exp.sha.5114f85", "2.0.0+exp.sha.5114f85" } },
  { name = "both", tag = "1.0.0-beta+5", want = { 1, 0, 0, "beta", "5", "1.0.0-beta+5" } },
}, function(row)
  local v = tags.parse_semver(row.tag)
  t.eq({ v.major, v.minor, v.patch, v.prerelease, v.build, v.version }, row.want)
end)

t.cases("parse_semver refuses what is not a release", {
  { tag = "v1.2" }, { tag = "release-1" }, { tag = "v1.2.3junk" }, { tag = "1.2.3-" }, { tag = "" },
}, function(row)
  t.eq(tags.parse_semver(row.tag), nil)
end)

t.cases("for_commit strategies", {
  { name = "sha is the default", opts = {}, want = { "0123456" } },
  { name = "dirty tree", opts = { git = info { dirty = true } }, want = { "0123456-dirty" } },
  { name = "semver with aliases", opts = { strategy = { "sha", "semver" }, git = info { tag = "v1.2.3" } },
    want = { "0123456", "1.2.3", "1.2", "1" } },
  { name = "semver 0.x has no bare major", opts = { strategy = "semver", git = info { tag = "v0.4.1" } },
    want = { "0.4.1", "0.4" } },
  { name = "semver without aliases", opts = { strategy = "semver", semver_aliases = false, git = info { tag = "v1.2.3" } },
    want = { "1.2.3" } },
  { name = "prerelease has no aliases", opts = { strategy = "semver", git = info { tag = "v2.0.0-rc.1" } },
    want = { "2.0.0-rc.1" } },
  { name = "build metadata: + becomes _", opts = { strategy = "semver", git = info { tag = "v1.0.0+b7" } },
    want = { "1.0.0_b7", "1.0", "1" } },
  { name = "semver on a commit without a release tag adds nothing",
    opts = { strategy = { "sha", "semver" }, git = info { tag = "nightly" } }, want = { "0123456" } },
  { name = "dirty release gets no semver tag", opts = { strategy = { "sha", "semver" }, git = info { tag = "v1.2.3", dirty = true } },
    want = { "0123456-dirty" } },
  { name = "env-date", opts = { strategy = "env-date", env = "prod", date = "20260406" }, want = { "prod-20260406" } },
  { name = "env-date from ISO date", opts = { strategy = "env-date", env = "staging", date = "2026-04-06" }, want = { "staging-20260406" } },
  { name = "env-date from epoch (UTC)", opts = { strategy = "env-date", date = 1775433600 }, want = { "prod-20260406" } },
  { name = "all three, extras, no duplicates",
    opts = { strategy = { "sha", "semver", "env-date" }, date = "20260406", git = info { tag = "v3.1.4" },
             extra = { "stable", "3.1.4" } },
    want = { "0123456", "3.1.4", "3.1", "3", "prod-20260406", "stable" } },
  { name = "latest allowed on a dev registry", opts = { registry_kind = "dev", extra = { "latest" } },
    want = { "0123456", "latest" } },
  { name = "latest allowed explicitly", opts = { allow_latest = true, extra = { "latest" } },
    want = { "0123456", "latest" } },
}, function(row)
  local opts = row.opts
  opts.git = opts.git or (opts.strategy ~= "env-date" and clean or nil)
  t.eq(tags.for_commit(opts), row.want)
end)

-- Issue 15 §5: a branch tag, several tags per run, latest refused for production also when given.
t.cases("the branch strategy: git's branch, else the CI's, as a valid tag", {
  { name = "git branch", opts = { strategy = "branch", git = info { branch = "main" } }, want = { "main" } },
  { name = "slashes become dashes", opts = { strategy = { "sha", "branch" }, git = info { branch = "feature/Login_2" } },
    want = { "0123456", "feature-Login_2" } },
  { name = "a GitHub pull request's source branch", env = { GITHUB_HEAD_REF = "fix/x", GITHUB_REF_NAME = "12/merge" },
    opts = { strategy = "branch", git = info {} }, want = { "fix-x" } },
  { name = "a GitHub branch push (detached checkout)", env = { GITHUB_REF_TYPE = "branch", GITHUB_REF_NAME = "release/2.x" },
    opts = { strategy = "branch", git = info {} }, want = { "release-2.x" } },
  { name = "Azure Pipelines", env = { BUILD_SOURCEBRANCH = "refs/heads/users/ann/wip" },
    opts = { strategy = "branch", git = info {} }, want = { "users-ann-wip" } },
  { name = "a GitHub tag push names no branch", env = { GITHUB_REF_TYPE = "tag", GITHUB_REF_NAME = "v1.0.0" },
    opts = { strategy = { "sha", "branch" }, git = info {} }, want = { "0123456" } },
  { name = "only literal tags", opts = { strategy = {}, extra = { "stable", "v2" } }, want = { "stable", "v2" } },
}, function(row)
  row.opts.getenv = function(k) return (row.env or {})[k] end
  t.eq(tags.for_commit(row.opts), row.want)
end)

t.case("of_branch and split", function()
  t.eq(tags.of_branch("-x/y"), "_x-y")
  t.eq(#tags.of_branch(("b"):rep(300)), 128)
  t.raises(function() tags.of_branch("") end, "invalid_argument", "branch must be a non%-empty string")
  local strategy, extra = tags.split { "sha", "branch", "latest", "v1" }
  t.eq(strategy, { "sha", "branch" })
  t.eq(extra, { "latest", "v1" })
  t.raises(function() tags.for_commit { git = clean, strategy = {} } end, "invalid_argument", "an empty list only with extra")
end)

t.case("env-date defaults to today (UTC)", function()
  t.eq(tags.for_commit { strategy = "env-date" }, { "prod-" .. os.date("!%Y%m%d") })
end)

t.cases("for_commit errors", {
  { name = "latest on production", opts = { git = clean, extra = { "latest" } }, code = "policy_violation",
    pattern = "no%-latest%-in%-production.*allow_latest = true" },
  { name = "latest on production by default kind", opts = { git = clean, registry_kind = "production", extra = { "latest" } },
    code = "policy_violation", pattern = "refused for a production registry" },
  { name = "unknown strategy", opts = { git = clean, strategy = "calver" }, code = "invalid_argument", pattern = "unknown strategy \"calver\"" },
  { name = "bad strategy type", opts = { git = clean, strategy = 3 }, code = "invalid_argument", pattern = "strategy must be" },
  { name = "bad registry kind", opts = { git = clean, registry_kind = "prod" }, code = "invalid_argument", pattern = "registry_kind" },
  { name = "bad extra tag", opts = { git = clean, extra = { "feature/x" } }, code = "invalid_argument", pattern = "extra%[1%]: tag \"feature/x\"" },
  { name = "extra not a list", opts = { git = clean, extra = "x" }, code = "invalid_argument", pattern = "extra must be a list" },
  { name = "bad env name", opts = { strategy = "env-date", env = "Prod/EU", date = "20260406" }, code = "invalid_argument",
    pattern = "strategy env%-date: tag \"Prod/EU%-20260406\"" },
  { name = "bad date", opts = { strategy = "env-date", date = "April 6" }, code = "invalid_argument", pattern = "date must be YYYYMMDD" },
  { name = "semver only, no release tag", opts = { strategy = "semver", git = info { tag = nil } }, code = "not_found",
    pattern = "needs a release tag" },
  { name = "git not a table", opts = { git = "abc" }, code = "invalid_argument", pattern = "git must be a table" },
  { name = "sha strategy without sha", opts = { git = {} }, code = "invalid_argument", pattern = "needs git.short_sha" },
}, function(row)
  t.raises(function() tags.for_commit(row.opts) end, row.code, row.pattern)
end)

t.case("refs joins repository and tags", function()
  t.eq(tags.refs("127.0.0.1:5000/team/app", { "0123456", "1.2.3" }),
    { "127.0.0.1:5000/team/app:0123456", "127.0.0.1:5000/team/app:1.2.3" })
  t.raises(function() tags.refs("", { "x" }) end, "invalid_argument", "repository")
  t.raises(function() tags.refs("app", { "a/b" }) end, "invalid_argument", "list%[1%]")
end)
