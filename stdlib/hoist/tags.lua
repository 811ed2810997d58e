--- hoist.tags: image tags for a commit (git sha, semver release, env-date) and the Docker
--- tag grammar. Policy lives here: `latest` is refused for production registries.
local M = {}

local util = require "hoist.util"
local fail = util.fail

--- Checks a tag against Docker's grammar `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
---@param tag any
---@return boolean ok
---@return string? reason why it is not a valid tag
function M.validate(tag)
  if type(tag) ~= "string" then return false, "a tag must be a string, got " .. type(tag) end
  if #tag == 0 then return false, "a tag must not be empty" end
  if #tag > 128 then return false, ("tag %q is %d characters long (at most 128)"):format(tag:sub(1, 20) .. "...", #tag) end
  if not tag:sub(1, 1):match("[%w_]") then
    return false, ("tag %q must start with a letter, digit or '_'"):format(tag)
  end
  local bad = tag:find("[^%w_.%-]")
  if bad then
    return false, ("tag %q holds %q at position %d (allowed: letters, digits, '_', '.', '-')"):format(tag, tag:sub(bad, bad), bad)
  end
  return true
end

--- Parses a release tag such as `v1.2.3`, `1.2.3-rc.1` or `v2.0.0+build.5`.
---@param tag string?
---@return {major: integer, minor: integer, patch: integer, prerelease?: string, build?: string, version: string}?
function M.parse_semver(tag)
  if type(tag) ~= "string" then return nil end
  local major, minor, patch, rest = tag:match("^v?(%d+)%.(%d+)%.(%d+)(.*)$")
  if not major then return nil end
  local pre, build
  if rest ~= "" then
    pre, build = rest:match("^%-([%w%.%-]+)%+([%w%.%-]+)$")
    if not pre then pre = rest:match("^%-([%w%.%-]+)$") end
    if not pre then build = rest:match("^%+([%w%.%-]+)$") end
    if not pre and not build then return nil end
  end
  local version = ("%d.%d.%d"):format(major, minor, patch)
  if pre then version = version .. "-" .. pre end
  if build then version = version .. "+" .. build end
  return { major = tonumber(major), minor = tonumber(minor), patch = tonumber(patch),
           prerelease = pre, build = build, version = version }
end

-- "YYYYMMDD" from a string, an epoch number or nil (today, UTC).
local function day_stamp(date)
  if date == nil then return os.date("!%Y%m%d") end
  if type(date) == "number" then return os.date("!%Y%m%d", date) end
  if type(date) == "string" and date:match("^%d%d%d%d%d%d%d%d$") then return date end
  if type(date) == "string" and date:match("^%d%d%d%d%-%d%d%-%d%d$") then return (date:gsub("%-", "")) end
  fail("invalid_argument", ("tags.for_commit: date must be YYYYMMDD, YYYY-MM-DD or an epoch number, got %s")
    :format(type(date) == "string" and ("%q"):format(date) or type(date)))
end

local strategies = {}

function strategies.sha(info)
  if not info.short_sha or info.short_sha == "" then
    fail("invalid_argument", "tags.for_commit: strategy \"sha\" needs git.short_sha")
  end
  return { info.short_sha .. (info.dirty and "-dirty" or "") }
end

function strategies.semver(info, opts)
  local v = M.parse_semver(info.tag)
  if not v then return {} end
  if info.dirty then
    hoist.log.warn(("release tag %s is at HEAD but the tree is dirty: no semver tags"):format(info.tag))
    return {}
  end
  -- '+' is not allowed in Docker tags; '_' is the usual stand-in (docker/metadata-action).
  local out = { (v.version:gsub("%+", "_")) }
  if not v.prerelease and opts.semver_aliases ~= false then
    out[#out + 1] = ("%d.%d"):format(v.major, v.minor)
    -- 0.x promises no compatibility, so a bare "0" would mislead.
    if v.major > 0 then out[#out + 1] = tostring(v.major) end
  end
  return out
end

-- The branch the commit was built from: git's, else what the CI says (a pull request's
-- source branch, a branch push's name; GitHub Actions, Azure Pipelines).
local function ci_branch(getenv)
  local function v(name) local x = getenv(name); return x ~= nil and x ~= "" and x or nil end
  if v("GITHUB_HEAD_REF") then return v("GITHUB_HEAD_REF") end
  if v("GITHUB_REF_TYPE") == "branch" and v("GITHUB_REF_NAME") then return v("GITHUB_REF_NAME") end
  local ref = v("SYSTEM_PULLREQUEST_SOURCEBRANCH") or v("BUILD_SOURCEBRANCH")
  return ref and (ref:match("^refs/heads/(.+)$") or (not ref:match("^refs/") and ref) or nil) or nil
end

--- A branch name as a tag, as docker/metadata-action makes one: every character Docker's tag
--- grammar refuses becomes '-' ("feature/login" -> "feature-login"), a leading '.' or '-'
--- becomes '_', cut to 128 characters.
---@param branch string
---@return string
function M.of_branch(branch)
  if type(branch) ~= "string" or branch == "" then
    fail("invalid_argument", "tags.of_branch: branch must be a non-empty string")
  end
  local tag = branch:gsub("[^%w_.%-]", "-"):gsub("^[.%-]", "_")
  return tag:sub(1, 128)
end

function strategies.branch(info, opts)
  local branch = info.branch or ci_branch(opts.getenv or os.getenv)
  if not branch then
    hoist.log.warn("tag strategy branch: HEAD is not on a branch (detached) and no CI variable names one: no branch tag")
    return {}
  end
  return { M.of_branch(branch) }
end

strategies["env-date"] = function(_, opts)
  local env = opts.env or "prod"
  return { env .. "-" .. day_stamp(opts.date) }
end

--- The strategy names tags.for_commit knows.
M.strategies = { "sha", "semver", "env-date", "branch" }

local function strategy_list(s, extra)
  if s == nil then return { "sha" } end
  if type(s) == "string" then return { s } end
  if type(s) == "table" and (#s > 0 or (type(extra) == "table" and #extra > 0)) then return s end
  fail("invalid_argument", "tags.for_commit: strategy must be \"sha\", \"semver\", \"env-date\", \"branch\" or a list "
    .. "of them (an empty list only with extra tags)")
end

--- Splits a list of tag specs (what container@1's `tags` takes) into the strategies it names
--- (tags.strategies) and literal tags, in order: {"sha", "branch", "latest"} ->
--- {"sha", "branch"}, {"latest"}.
---@param list string[]
---@return string[] strategy, string[] extra
function M.split(list)
  local known, strategy, extra = {}, {}, {}
  for _, n in ipairs(M.strategies) do known[n] = true end
  for _, item in ipairs(list) do
    if known[item] then strategy[#strategy + 1] = item else extra[#extra + 1] = item end
  end
  return strategy, extra
end

local function check_policy(list, opts)
  local kind = opts.registry_kind or "production"
  if kind ~= "production" and kind ~= "dev" then
    fail("invalid_argument", ("tags.for_commit: registry_kind must be \"production\" or \"dev\", got %q"):format(tostring(kind)))
  end
  for _, tag in ipairs(list) do
    if tag == "latest" and kind == "production" and opts.allow_latest ~= true then
      fail("policy_violation",
        "tag \"latest\" is refused for a production registry (rule no-latest-in-production): it moves with "
          .. "every push, so what runs cannot be traced or rolled back. Pass allow_latest = true to push it "
          .. "anyway, or registry_kind = \"dev\" for a development registry",
        { rule = "no-latest-in-production", tag = tag, registry_kind = kind })
    end
  end
end

---@class hoist.tags.Options
---@field git? hoist.git.Info commit facts; read with hoist.git.info{dir=} when absent
---@field dir? string repository to read when `git` is absent (default ".")
---@field strategy? string|string[] "sha" (default), "semver", "env-date", "branch", or a list of them (empty: only `extra`)
---@field getenv? fun(name: string): string? environment lookup for the branch strategy's CI variables (default os.getenv)
---@field env? string environment name for env-date tags (default "prod")
---@field date? string|number day for env-date tags: "YYYYMMDD", "YYYY-MM-DD" or epoch (default today, UTC)
---@field semver_aliases? boolean also tag X.Y and X for a stable release (default true)
---@field registry_kind? "production"|"dev" default "production"
---@field allow_latest? boolean let "latest" through for a production registry (default false)
---@field extra? string[] more tags, validated and policy-checked like the rest

--- The tags to give an image built from a commit, in order, without duplicates.
--- Raises invalid_argument for a bad option or tag, policy_violation for `latest` on a
--- production registry, not_found when no strategy yields a tag.
---@param opts? hoist.tags.Options
---@return string[]
function M.for_commit(opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("invalid_argument", "tags.for_commit: expected an options table") end
  local names = strategy_list(opts.strategy, opts.extra)
  for _, name in ipairs(names) do
    if not strategies[name] then
      fail("invalid_argument", ("tags.for_commit: unknown strategy %q (%s)"):format(tostring(name),
        table.concat(M.strategies, ", ")))
    end
  end
  local info = opts.git
  if info == nil then
    -- sha and semver need the commit; branch takes git's when there is one, else the CI's
    -- variables; env-date needs nothing
    local needs_git, wants_git = false, false
    for _, name in ipairs(names) do
      needs_git = needs_git or (name ~= "env-date" and name ~= "branch")
      wants_git = wants_git or name == "branch"
    end
    if needs_git then
      info = hoist.git.info { dir = opts.dir }
    else
      local ok, got = wants_git and pcall(hoist.git.info, { dir = opts.dir })
      info = ok and got or {}
    end
  elseif type(info) ~= "table" then
    fail("invalid_argument", "tags.for_commit: git must be a table from hoist.git.info")
  end
  if opts.extra ~= nil and type(opts.extra) ~= "table" then
    fail("invalid_argument", "tags.for_commit: extra must be a list of tags")
  end

  local out, seen = {}, {}
  local function add(tag, from)
    local ok, why = M.validate(tag)
    if not ok then fail("invalid_argument", ("tags.for_commit: %s: %s"):format(from, why)) end
    if not seen[tag] then
      seen[tag] = true
      out[#out + 1] = tag
    end
  end
  for _, name in ipairs(names) do
    for _, tag in ipairs(strategies[name](info, opts)) do add(tag, "strategy " .. name) end
  end
  for i, tag in ipairs(opts.extra or {}) do add(tag, ("extra[%d]"):format(i)) end
  check_policy(out, opts)
  if #out == 0 then
    fail("not_found", ("tags.for_commit: no tag for this commit: strategy %s needs a release tag "
      .. "such as v1.2.3 at HEAD (HEAD has %s)"):format(table.concat(names, ","), info.tag and ("tag " .. info.tag) or "no tag"))
  end
  return out
end

--- `repository:tag` for every tag.
---@param repository string e.g. "127.0.0.1:5000/team/app"
---@param list string[]
---@return string[]
function M.refs(repository, list)
  if type(repository) ~= "string" or repository == "" then
    fail("invalid_argument", "tags.refs: repository must be a non-empty string")
  end
  local out = {}
  for i, tag in ipairs(list) do
    local ok, why = M.validate(tag)
    if not ok then fail("invalid_argument", ("tags.refs: list[%d]: %s"):format(i, why)) end
    out[i] = repository .. ":" .. tag
  end
  return out
end

return M
