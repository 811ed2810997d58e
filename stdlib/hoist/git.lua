--- hoist.git: facts about the commit being built (sha, branch, exact tag, dirty, remote),
--- read with the git CLI, or from GitHub Actions' variables where git is absent.
local tags = require "hoist.tags"

local M = {}

local util = require "hoist.util"
local fail = util.fail

--- Removes credentials from a remote URL (CI checkouts put tokens there) and turns an scp-like
--- address `git@host:owner/repo.git` into `https://host/owner/repo`, the form image labels use.
---@param url string?
---@return string?
function M.public_url(url)
  if type(url) ~= "string" or url == "" then return nil end
  local host, path = url:match("^[%w._%-]+@([%w._%-]+):(.+)$")
  if host and not url:find("://", 1, true) then url = "https://" .. host .. "/" .. path end
  url = url:gsub("^(%a[%w+.%-]*://)[^/@]*@", "%1")
  url = url:gsub("^ssh://([^/]+)/", "https://%1/")
  return (url:gsub("%.git$", ""))
end

---@class hoist.git.Info
---@field sha string full commit id
---@field short_sha string first 7 characters of sha
---@field branch? string nil on a detached HEAD
---@field tag? string exact tag at HEAD (the highest release tag when several), nil if none
---@field tags string[] every tag at HEAD
---@field dirty boolean tracked files differ from HEAD (untracked files count with untracked = true)
---@field remote_url? string origin's URL without credentials
---@field source "git"|"env" where the facts came from

-- Picks the tag to report when several point at HEAD: the highest release, else the first.
local function best_tag(list)
  local best, best_v
  for _, t in ipairs(list) do
    local v = tags.parse_semver(t)
    if v then
      v = { major = v.major, minor = v.minor, patch = v.patch, pre = v.prerelease }
      if not best_v or hoist.semver.compare(v, best_v) > 0 then best, best_v = t, v end
    end
  end
  return best or list[1]
end

local function lines(text)
  local out = {}
  for l in (text or ""):gmatch("[^\r\n]+") do out[#out + 1] = l end
  return out
end

-- Facts from GitHub Actions' variables (git absent, or the checkout has no .git).
local function from_env(getenv)
  local sha = getenv("GITHUB_SHA")
  if not sha or sha == "" then return nil end
  local ref_name, ref_type = getenv("GITHUB_REF_NAME"), getenv("GITHUB_REF_TYPE")
  local ref = getenv("GITHUB_REF") or ""
  if not ref_type or ref_type == "" then
    ref_type = ref:match("^refs/tags/") and "tag" or ref:match("^refs/heads/") and "branch" or nil
  end
  local server, repo = getenv("GITHUB_SERVER_URL"), getenv("GITHUB_REPOSITORY")
  local tag = ref_type == "tag" and ref_name or nil
  return {
    sha = sha,
    short_sha = sha:sub(1, 7),
    branch = ref_type == "branch" and ref_name or nil,
    tag = tag,
    tags = { tag },
    dirty = false,
    remote_url = (server and repo and server ~= "" and repo ~= "") and M.public_url(server .. "/" .. repo) or nil,
    source = "env",
  }
end

local function git_runner(opts)
  local bin, dir = opts.git or "git", opts.dir or "."
  return function(...)
    return hoist.exec { bin, "-C", dir, ... }
  end
end

---@class hoist.git.InfoOptions
---@field dir? string a folder inside the work tree (default ".")
---@field untracked? boolean untracked files make the tree dirty (default false, like `git describe --dirty`)
---@field git? string git program (default "git")
---@field getenv? fun(name: string): string? environment lookup (default os.getenv; tests)

--- Reads the commit at HEAD. Outside a work tree raises not_found (unless GITHUB_SHA is set:
--- then GitHub Actions' variables answer); without git answers from GITHUB_SHA /
--- GITHUB_REF_NAME / GITHUB_REF_TYPE, else raises tool_missing.
---@param opts? hoist.git.InfoOptions
---@return hoist.git.Info
function M.info(opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("invalid_argument", "git.info: expected an options table {dir=}") end
  if opts.dir ~= nil and type(opts.dir) ~= "string" then fail("invalid_argument", "git.info: dir must be a string") end
  local getenv = opts.getenv or os.getenv
  local git = git_runner(opts)
  local ok, head = pcall(git, "rev-parse", "--verify", "-q", "HEAD^{commit}")
  if not ok then
    if hoist.is_error(head, "tool_missing") then
      local info = from_env(getenv)
      if info then return info end
      fail("tool_missing", "git.info: git is not installed and GITHUB_SHA is not set", { program = opts.git or "git" })
    end
    error(head, 0)
  end
  if head.code ~= 0 then
    local inside = git("rev-parse", "--is-inside-work-tree")
    if inside.code ~= 0 then
      local info = from_env(getenv)
      if info then return info end
      fail("not_found", ("git.info: %s is not inside a git work tree"):format(opts.dir or "."),
        { dir = opts.dir or ".", stderr = inside.stderr })
    end
    fail("not_found", ("git.info: the repository at %s has no commit yet"):format(opts.dir or "."), { dir = opts.dir or "." })
  end
  local sha = head.stdout:match("%x+")

  local branch = git("symbolic-ref", "--short", "-q", "HEAD")
  local at_head = lines(git("tag", "--points-at", "HEAD").stdout)
  table.sort(at_head)
  local status_args = { "status", "--porcelain" }
  if not opts.untracked then status_args[#status_args + 1] = "--untracked-files=no" end
  local status = git(unpack(status_args))
  if status.code ~= 0 then
    fail("tool_failed", "git.info: git status failed: " .. status.stderr, { stderr = status.stderr })
  end
  local remote = git("remote", "get-url", "origin")

  return {
    sha = sha,
    short_sha = sha:sub(1, 7),
    branch = branch.code == 0 and branch.stdout:match("[^\r\n]+") or nil,
    tag = best_tag(at_head),
    tags = at_head,
    dirty = status.stdout:match("%S") ~= nil,
    remote_url = remote.code == 0 and M.public_url(remote.stdout:match("[^\r\n]+")) or nil,
    source = "git",
  }
end

return M
