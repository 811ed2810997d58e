-- hoist.git: commit facts from a real repository made with `git init` in a temp folder,
-- and from GitHub Actions' variables when git is absent.
local t = require "hoist.test"
local git = hoist.git
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

local function sh(argv, cwd)
  argv.cwd = cwd
  argv.check = true
  argv.env = { GIT_AUTHOR_NAME = "hoist", GIT_AUTHOR_EMAIL = "hoist@example.invalid",
               GIT_COMMITTER_NAME = "hoist", GIT_COMMITTER_EMAIL = "hoist@example.invalid" }
  return hoist.exec(argv)
end

local write = support.write

-- A fresh folder, removed after fn returns or fails.
local function with_dir(fn)
  local dir = support.tmpdir("hoist-git-test")
  local ok, err = pcall(fn, dir)
  hoist.exec { "rm", "-rf", dir }
  if not ok then error(err, 0) end
end

-- A repository on branch main with one commit of README.
local function with_repo(fn)
  with_dir(function(dir)
    sh({ "git", "init", "-q", "-b", "main" }, dir)
    write(dir .. "/README", "hello\n")
    sh({ "git", "add", "README" }, dir)
    sh({ "git", "commit", "-q", "-m", "first" }, dir)
    fn(dir)
  end)
end

local function head(dir) return sh({ "git", "rev-parse", "HEAD" }, dir).stdout:match("%x+") end

local function fake_env(vars) return function(name) return vars[name] end end

t.case("a clean repository", function()
  with_repo(function(dir)
    local info = git.info { dir = dir }
    t.eq(info.sha, head(dir))
    t.match(info.sha, "^%x+$")
    t.eq(#info.sha, 40)
    t.eq(info.short_sha, info.sha:sub(1, 7))
    t.eq(info.branch, "main")
    t.eq(info.tag, nil)
    t.eq(info.tags, {})
    t.eq(info.dirty, false)
    t.eq(info.remote_url, nil)
    t.eq(info.source, "git")
  end)
end)

t.case("dirty: tracked changes count, untracked files only when asked", function()
  with_repo(function(dir)
    write(dir .. "/new.txt", "untracked\n")
    t.eq(git.info({ dir = dir }).dirty, false)
    t.eq(git.info({ dir = dir, untracked = true }).dirty, true)
    write(dir .. "/README", "changed\n")
    t.eq(git.info({ dir = dir }).dirty, true)
  end)
end)

t.case("the exact tag at HEAD: the highest release wins", function()
  with_repo(function(dir)
    sh({ "git", "tag", "v1.2.3" }, dir)
    sh({ "git", "tag", "-a", "v1.2.4", "-m", "release" }, dir)
    sh({ "git", "tag", "v2.0.0-rc.1" }, dir)
    sh({ "git", "tag", "nightly" }, dir)
    local info = git.info { dir = dir }
    t.eq(info.tag, "v2.0.0-rc.1")
    t.eq(info.tags, { "nightly", "v1.2.3", "v1.2.4", "v2.0.0-rc.1" })
    sh({ "git", "tag", "v2.0.0" }, dir)
    t.eq(git.info({ dir = dir }).tag, "v2.0.0")
    -- a later commit has no exact tag
    write(dir .. "/README", "two\n")
    sh({ "git", "commit", "-q", "-am", "second" }, dir)
    t.eq(git.info({ dir = dir }).tag, nil)
  end)
end)

t.case("a non-release tag is still reported", function()
  with_repo(function(dir)
    sh({ "git", "tag", "nightly" }, dir)
    t.eq(git.info({ dir = dir }).tag, "nightly")
  end)
end)

t.case("detached HEAD has no branch; a sub-folder works", function()
  with_repo(function(dir)
    hoist.exec { "mkdir", dir .. "/sub", check = true }
    sh({ "git", "checkout", "-q", "--detach" }, dir)
    local info = git.info { dir = dir .. "/sub" }
    t.eq(info.branch, nil)
    t.eq(info.sha, head(dir))
  end)
end)

t.case("remote URL without its credentials", function()
  with_repo(function(dir)
    sh({ "git", "remote", "add", "origin", "https://x-access-token:ghs_notreal@github.com/acme/app.git" }, dir)
    local info = git.info { dir = dir }
    t.eq(info.remote_url, "https://github.com/acme/app")
  end)
end)

t.cases("public_url", {
  { url = "https://github.com/acme/app.git", want = "https://github.com/acme/app" },
  { url = "https://user:pw@example.com/acme/app", want = "https://example.com/acme/app" },
  { url = "git@github.com:acme/app.git", want = "https://github.com/acme/app" },
  { url = "ssh://git@github.com/acme/app.git", want = "https://github.com/acme/app" },
  { url = "file:///srv/git/app.git", want = "file:///srv/git/app" },
  { url = "", want = nil },
}, function(row)
  t.eq(git.public_url(row.url), row.want)
end)

t.case("outside a work tree: not_found", function()
  with_dir(function(dir)
    t.raises(function() git.info { dir = dir, getenv = fake_env {} } end, "not_found", "not inside a git work tree")
  end)
end)

t.case("outside a work tree in GitHub Actions: the variables answer", function()
  with_dir(function(dir)
    local info = git.info { dir = dir, getenv = fake_env {
      GITHUB_SHA = "89abcdef0123456789abcdef0123456789abcdef", GITHUB_REF_NAME = "main", GITHUB_REF_TYPE = "branch",
    } }
    t.eq(info.source, "env")
    t.eq(info.branch, "main")
  end)
end)

t.case("a repository without commits: not_found", function()
  with_dir(function(dir)
    sh({ "git", "init", "-q" }, dir)
    t.raises(function() git.info { dir = dir } end, "not_found", "has no commit yet")
  end)
end)

t.case("a missing folder: not_found", function()
  t.raises(function() git.info { dir = "/nonexistent/hoist", getenv = fake_env {} } end, "not_found")
end)

t.cases("without git: GitHub Actions' variables", {
  { name = "tag build", env = {
      GITHUB_SHA = "0123456789abcdef0123456789abcdef01234567", GITHUB_REF_NAME = "v1.2.3", GITHUB_REF_TYPE = "tag",
      GITHUB_SERVER_URL = "https://github.com", GITHUB_REPOSITORY = "acme/app" },
    want = { sha = "0123456789abcdef0123456789abcdef01234567", short_sha = "0123456", tag = "v1.2.3", tags = { "v1.2.3" },
             dirty = false, remote_url = "https://github.com/acme/app", source = "env" } },
  { name = "branch build from GITHUB_REF", env = {
      GITHUB_SHA = "0123456789abcdef0123456789abcdef01234567", GITHUB_REF_NAME = "main", GITHUB_REF = "refs/heads/main" },
    want = { sha = "0123456789abcdef0123456789abcdef01234567", short_sha = "0123456", branch = "main", tags = {},
             dirty = false, source = "env" } },
}, function(row)
  t.eq(git.info { git = "/nonexistent/git", getenv = fake_env(row.env) }, row.want)
end)

t.case("without git and without GITHUB_SHA: tool_missing", function()
  t.raises(function() git.info { git = "/nonexistent/git", getenv = fake_env {} } end, "tool_missing", "GITHUB_SHA")
end)

t.case("bad options", function()
  t.raises(function() git.info "." end, "invalid_argument", "options table")
  t.raises(function() git.info { dir = 3 } end, "invalid_argument", "dir must be a string")
end)

t.case("tags.for_commit reads the repository", function()
  with_repo(function(dir)
    sh({ "git", "tag", "v1.4.0" }, dir)
    local sha = head(dir)
    t.eq(hoist.tags.for_commit { dir = dir, strategy = { "sha", "semver" } }, { sha:sub(1, 7), "1.4.0", "1.4", "1" })
  end)
end)
