-- hoist.docker, unit level: command lines, dry-run, secrets, error mapping and build-failure
-- parsing, against a fake docker (cli.runner) and recorded output. The real engine is
-- exercised in docker_integration_test.lua.
local t = require "hoist.test"
local docker = hoist.docker
local cli = require "hoist.docker.cli"
local build = require "hoist.docker.build"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local samples = dofile(here .. "/docker_samples.lua")

local F = dofile(here .. "/docker_fake.lua")
local GIT, has, after, with_docker = F.GIT, F.has, F.after, F.with_docker
local NO_BUILDX, BUILDX, built = F.NO_BUILDX, F.BUILDX, F.built

---------------------------------------------------------------- build

t.case("build: the classic builder's command line", function()
  -- the classic builder reuses only images the engine has: cache_from is pulled first
  local pulled = { match = "^pull %-%-quiet acme/app:cache$", stdout = "acme/app:cache\n" }
  with_docker({ NO_BUILDX, pulled, built() }, function(calls)
    local r = docker.build {
      context = here, file = here .. "/Dockerfile.x", tags = { "127.0.0.1:5000/acme/app:0123456", "acme/app:1.0" },
      build_args = { VERSION = "1.0", B = 2 }, labels = { team = "core", ["org.opencontainers.image.source"] = "https://x" },
      target = "runtime", platform = "linux/amd64", cache_from = "acme/app:cache", pull = true, no_cache = true, git = GIT,
    }
    t.eq(r, { id = "sha256:" .. ("ab"):rep(32), tags = { "127.0.0.1:5000/acme/app:0123456", "acme/app:1.0" },
              builder = "classic", duration = 0.01 })
    t.eq({ calls[2][2], calls[2][3], calls[2][4] }, { "pull", "--quiet", "acme/app:cache" })
    local spec = calls[3]
    t.eq(spec[2], "build")
    t.eq(spec.env, nil, "docker picks the classic builder itself when buildx is missing")
    t.eq(spec.stream, true)
    t.ok(not has(spec, "--progress=plain"), "no BuildKit flag for the classic builder")
    t.ok(has(spec, "--force-rm"), "a failed step leaves no container behind")
    t.eq(after(spec, "--file"), here .. "/Dockerfile.x")
    t.eq(after(spec, "--target"), "runtime")
    t.eq(after(spec, "--platform"), "linux/amd64")
    t.eq(after(spec, "--cache-from"), "acme/app:cache")
    t.ok(has(spec, "--pull") and has(spec, "--no-cache"))
    t.ok(has(spec, "127.0.0.1:5000/acme/app:0123456") and has(spec, "acme/app:1.0"))
    t.ok(has(spec, "B=2") and has(spec, "VERSION=1.0"), "build args")
    t.ok(has(spec, "org.opencontainers.image.revision=" .. GIT.sha), "revision label")
    t.ok(has(spec, "org.opencontainers.image.source=https://x"), "caller's label wins over the OCI default")
    t.ok(has(spec, "team=core"))
    local created
    for _, a in ipairs(spec) do created = created or a:match("^org%.opencontainers%.image%.created=(.*)$") end
    t.match(created, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$")
    t.eq(spec[#spec], here, "the context comes last")
    t.eq(io.open(after(spec, "--iidfile")), nil, "the iid file is removed")
  end)
end)

t.case("build: BuildKit cache: cache_from specs and images pass through unpulled, cache_to exports", function()
  with_docker({ BUILDX, built() }, function(calls)
    local r = docker.build { context = here, tags = "127.0.0.1:5000/acme/app:2", oci_labels = false,
                             cache_from = { "type=registry,ref=127.0.0.1:5000/acme/app:buildcache", "127.0.0.1:5000/acme/app:main" },
                             cache_to = { "type=inline", "type=registry,ref=127.0.0.1:5000/acme/app:buildcache,mode=max" } }
    t.eq(r.builder, "buildkit")
    t.eq(#calls, 2, "no pull before a BuildKit build: BuildKit fetches the cache itself")
    local spec, from, to = calls[2], {}, {}
    for i, a in ipairs(spec) do
      if a == "--cache-from" then from[#from + 1] = spec[i + 1] end
      if a == "--cache-to" then to[#to + 1] = spec[i + 1] end
    end
    t.eq(from, { "type=registry,ref=127.0.0.1:5000/acme/app:buildcache", "127.0.0.1:5000/acme/app:main" })
    t.eq(to, { "type=inline", "type=registry,ref=127.0.0.1:5000/acme/app:buildcache,mode=max" })
  end)
  -- the classic builder cannot export a cache nor read a cache spec: refused, naming the option
  with_docker({ NO_BUILDX }, function()
    t.raises(function() docker.build { context = here, tags = "a:1", builder = "classic", cache_to = "type=inline" } end,
      "tool_missing", 'cache_to needs BuildKit, and builder = "classic" was asked for')
    t.raises(function() docker.build { context = here, tags = "a:1", builder = "classic",
                                       cache_from = "type=registry,ref=a:cache" } end,
      "tool_missing", "cache_from with a BuildKit cache spec %(type=...%) needs BuildKit")
  end)
end)

t.case("build: BuildKit when buildx is there, secrets through private files", function()
  local secret_value = "build-secret-" .. tostring(hoist.now())
  with_docker({ BUILDX, built() }, function(calls)
    local seen_mode, seen_text
    cli.runner = (function(inner)
      return function(spec)
        local s = spec[2] == "build" and after(spec, "--secret")
        if s then
          local path = s:match("src=(.*)$")
          seen_text = cli.read_file(path)
          seen_mode = hoist.exec({ "stat", "-c", "%a", path }).stdout:match("%d+")
        end
        return inner(spec)
      end
    end)(cli.runner)
    local r = docker.build { context = here, tags = "acme/app:1", oci_labels = false,
                             secrets = { { id = "npmrc", value = secret_value } } }
    t.eq(r.builder, "buildkit")
    local spec = calls[2]
    t.eq(spec.env, { DOCKER_BUILDKIT = "1" })
    t.ok(has(spec, "--progress=plain"))
    t.match(after(spec, "--secret"), "^id=npmrc,src=/")
    t.eq(seen_text, secret_value)
    t.eq(seen_mode, "600")
    t.eq(io.open(after(spec, "--secret"):match("src=(.*)$")), nil, "the secret file is removed")
    t.no_match(table.concat(spec, " "), secret_value)
    t.ok(hoist.scrub(secret_value) ~= secret_value, "the value is registered as a secret")
    for _, a in ipairs(spec) do t.no_match(a, "org.opencontainers", "oci_labels = false") end
  end)
end)

t.case("build: secrets without BuildKit name the reason", function()
  with_docker({ NO_BUILDX }, function(calls)
    t.raises(function()
      docker.build { context = here, secrets = { { id = "x", src = here .. "/docker_test.lua" } } }
    end, "tool_missing", "build secrets need BuildKit, and docker buildx is missing")
    t.eq(#calls, 1, "nothing was built")
  end)
end)

t.case("build: builder = classic skips detection", function()
  with_docker({ built() }, function(calls)
    t.eq(docker.build({ context = here, builder = "classic", git = GIT }).builder, "classic")
    t.eq(#calls, 1)
    t.eq(calls[1].env, { DOCKER_BUILDKIT = "0" })
  end)
end)

t.cases("build: bad options name the option", {
  { name = "not a table", opts = "ctx", pattern = "expected an options table" },
  { name = "no context", opts = {}, pattern = "option 'context' is required" },
  { name = "missing context", opts = { context = "/nonexistent/ctx" }, pattern = "context /nonexistent/ctx does not exist" },
  { name = "bad tag", opts = { context = ".", tags = { "acme/app:feature/x" } }, pattern = "tags%[1%]" },
  { name = "upper-case repo", opts = { context = ".", tags = "Acme/App:1" }, pattern = "not a valid image reference" },
  { name = "build_args list", opts = { context = ".", build_args = { { "x" } } }, pattern = "build_args must map names" },
  { name = "bad builder", opts = { context = ".", builder = "kaniko" }, pattern = "option builder" },
  { name = "secret without id", opts = { context = ".", builder = "buildkit", secrets = { { src = "x" } } }, pattern = "secrets%[1%] needs id" },
  { name = "secret with two sources", opts = { context = ".", builder = "buildkit", secrets = { { id = "a", src = "x", value = "y" } } },
    pattern = "exactly one of" },
  { name = "secret env unset", opts = { context = ".", builder = "buildkit", secrets = { { id = "a", env = "HOIST_TEST_UNSET_VAR" } } },
    pattern = "HOIST_TEST_UNSET_VAR is not set" },
}, function(row)
  with_docker({ NO_BUILDX }, function()
    t.raises(function() docker.build(row.opts) end, "invalid_argument", row.pattern)
  end)
end)

t.case("build: a secret in build_args is refused", function()
  local s = hoist.secret("ba-secret-" .. tostring(hoist.now()))
  with_docker({ NO_BUILDX }, function()
    t.raises(function() docker.build { context = here, build_args = { TOKEN = s } } end,
      "invalid_argument", "build_args.TOKEN holds a registered secret")
  end)
end)

t.case("build: dry-run plans and builds nothing", function()
  with_docker({ NO_BUILDX }, function(calls)
    local r = docker.build { context = here, tags = { "acme/app:1" }, git = GIT }
    t.eq(r.planned, true)
    t.eq(r.id, "dry-run")
    t.eq(r.action, "docker.build")
    t.eq(r.argv[1], cli.binary())
    t.eq(r.argv[2], "build")
    t.eq(#calls, 1, "only the builder detection ran")
  end, { dry_run = true })
end)

t.case("build: a failing Dockerfile shows the step and its output", function()
  with_docker({ NO_BUILDX, { match = "^build ", code = 1, stdout = samples.classic_run_stdout, stderr = samples.classic_run_stderr } },
    function()
      local err = t.raises(function() docker.build { context = here, git = GIT } end, "tool_failed",
        "failed at step 3/4 `RUN echo about to fail && ls /nope && echo never`: The command")
      t.match(err.message, "\n  | about to fail\n  | ls: /nope: No such file or directory$")
      t.eq(err.details.step, "RUN echo about to fail && ls /nope && echo never")
      t.eq(err.details.builder, "classic")
      t.eq(err.details.status, 1)
      t.ok(#err.details.tail > 0 and #err.details.tail <= 20)
    end)
end)

t.case("build: an unreachable daemon is unavailable", function()
  with_docker({ NO_BUILDX, { match = "^build ", code = 1,
    stderr = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n" } },
    function()
      t.raises(function() docker.build { context = here, git = GIT } end, "unavailable", "Cannot connect to the Docker daemon")
    end)
end)

t.case("build: docker's refusal of its command line is the message, not the --help hint", function()
  with_docker({ NO_BUILDX, { match = "^build ", code = 125, stderr = samples.build_bad_tag_stderr } }, function()
    local err = t.raises(function() docker.build { context = here, git = GIT } end, "tool_failed",
      'docker build failed: invalid argument "Bad:Ref" for "%-t, %-%-tag" flag: invalid reference format')
    t.no_match(err.message, "%-%-help")
    t.no_match(err.message, "Usage:")
  end)
end)

t.cases("parse_failure on recorded output", {
  { name = "classic RUN", out = "classic_run_stdout", err = "classic_run_stderr", builder = "classic",
    position = "3/4", instruction = "RUN echo about to fail && ls /nope && echo never",
    output = { "about to fail", "ls: /nope: No such file or directory" },
    error = "The command '/bin/sh -c echo about to fail && ls /nope && echo never' returned a non-zero code: 1" },
  { name = "classic COPY", out = "classic_copy_stdout", err = "classic_copy_stderr", builder = "classic",
    position = "2/2", instruction = "COPY missing.txt /x", output = {},
    error = "COPY failed: file not found in build context or excluded by .dockerignore: stat missing.txt: file does not exist" },
  { name = "classic parse error", out = "classic_parse_stdout", err = "classic_parse_stderr", builder = "classic",
    output = {}, error = "Error response from daemon: dockerfile parse error line 2: unknown instruction: FOO" },
  { name = "BuildKit RUN", err = "buildkit_run_stderr", builder = "buildkit",
    position = "3/4", instruction = "RUN echo about to fail && ls /nope && echo never",
    output = { "about to fail", "ls: /nope: No such file or directory" },
    error = "executor failed running [/bin/sh -c echo about to fail && ls /nope && echo never]: exit code: 1" },
  { name = "BuildKit COPY", err = "buildkit_copy_stderr", builder = "buildkit",
    position = "2/2", instruction = "COPY missing.txt /x", output = {}, error = "\"/missing.txt\" not found: not found" },
  { name = "BuildKit parse error", err = "buildkit_parse_stderr", builder = "buildkit", output = {},
    error = "failed to solve with frontend dockerfile.v0: failed to create LLB definition: dockerfile parse error line 2: unknown instruction: FOO" },
  { name = "buildx RUN in a named stage", err = "buildx_run_stderr", builder = "buildkit",
    position = "builder 3/4", instruction = "RUN echo about to fail && ls /nope && echo never",
    output = { "about to fail", "ls: /nope: No such file or directory" },
    error = "process \"/bin/sh -c echo about to fail && ls /nope && echo never\" did not complete successfully: exit code: 1" },
  { name = "buildx parse error", err = "buildx_parse_stderr", builder = "buildkit", output = {},
    error = "ERROR: failed to solve: dockerfile parse error on line 2: unknown instruction: FOO" },
}, function(row)
  local f = build.parse_failure(row.out and samples[row.out] or "", samples[row.err], row.builder)
  t.eq(f.position, row.position)
  t.eq(f.instruction, row.instruction)
  t.eq(f.output, row.output)
  t.eq(f.error, row.error)
  t.ok(#f.tail > 0 and #f.tail <= 20, "tail has 1..20 lines")
  for _, l in ipairs(f.tail) do t.no_match(l, "\27", "no colour codes") end
  local msg = build.failure_message(f)
  if row.instruction then t.match(msg, "at step", "message names the step") end
end)

---------------------------------------------------------------- errors

t.cases("classify docker's messages", {
  { text = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?", code = "unavailable" },
  { text = "error during connect: Get \"http://%2Fvar%2Frun%2Fdocker.sock/v1.24/info\": EOF", code = "unavailable" },
  { text = "permission denied while trying to connect to the Docker daemon socket", code = "forbidden" },
  { text = "Error: No such object: web", code = "not_found" },
  { text = "Error response from daemon: No such container: web", code = "not_found" },
  { text = "Error response from daemon: No such image: acme/app:1", code = "not_found" },
  { text = "An image does not exist locally with the tag: 127.0.0.1:5000/acme/app", code = "not_found" },
  { text = "Error response from daemon: Get \"http://127.0.0.1:5001/v2/\": unauthorized: authentication required", code = "unauthorized" },
  { text = "no basic auth credentials", code = "unauthorized" },
  { text = "denied: requested access to the resource is denied", code = "forbidden" },
  { text = "docker: Error response from daemon: Conflict. The container name \"/web\" is already in use", code = "conflict" },
  { text = "Bind for 127.0.0.1:8080 failed: port is already allocated", code = "conflict" },
  { text = "toomanyrequests: You have reached your pull rate limit", code = "throttled" },
  { text = "exec format error", code = "tool_failed" },
  -- docker run of an image whose registry name does not resolve: the network, not the image
  { text = "Unable to find image 'registry.invalid/acme/app:1' locally\ndocker: Error response from daemon: Get "
      .. "\"https://registry.invalid/v2/\": dial tcp: lookup registry.invalid on 127.0.0.53:53: no such host.", code = "unavailable" },
  { text = "docker: Error response from daemon: Get \"https://r.example/v2/\": dial tcp: lookup r.example: "
      .. "Temporary failure in name resolution.", code = "unavailable" },
  { text = "Error response from daemon: Get \"https://r.example/v2/\": dial tcp: lookup r.example on 10.0.0.2:53: "
      .. "server misbehaving", code = "unavailable" },
}, function(row)
  t.eq(cli.classify(row.text), row.code)
end)

t.case("no docker binary is tool_missing", function()
  with_docker({}, function()
    cli.runner = function() hoist.error { code = "tool_missing", message = "docker: not found" } end
    t.raises(function() docker.ps() end, "tool_missing", "docker CLI %(docker%) is not installed")
  end)
end)

t.case("a secret on a docker command line is refused", function()
  local s = hoist.secret("argv-secret-" .. tostring(hoist.now()))
  with_docker({}, function(calls)
    t.raises(function() docker.run { image = "acme/app:1", command = { "--token", s } } end,
      "invalid_argument", "holds a registered secret")
    t.eq(#calls, 0)
  end)
end)


---------------------------------------------------------------- tag, push, login

t.case("tag, and its dry-run", function()
  with_docker({ { match = "^tag " } }, function(calls)
    t.eq(docker.tag("acme/app:1", "127.0.0.1:5000/acme/app:1"), { source = "acme/app:1", target = "127.0.0.1:5000/acme/app:1" })
    t.eq({ calls[1][2], calls[1][3], calls[1][4] }, { "tag", "acme/app:1", "127.0.0.1:5000/acme/app:1" })
  end)
  with_docker({}, function(calls)
    local r = docker.tag("acme/app:1", "acme/app:2")
    t.eq(r.planned, true)
    t.eq(#calls, 0)
  end, { dry_run = true })
  t.raises(function() docker.tag("acme/app:1", "acme/app:no good") end, "invalid_argument", "target")
end)

-- Runs fn with package.loaded["hoist.registry"] replaced.
local function with_registry(fake, fn)
  local saved = package.loaded["hoist.registry"]
  package.loaded["hoist.registry"] = fake
  local ok, err = pcall(fn)
  package.loaded["hoist.registry"] = saved
  if not ok then error(err, 0) end
end

t.case("push reads the digest from the registry", function()
  local digest = "sha256:" .. ("cd"):rep(32)
  local asked
  with_registry({ resolve = function(image) asked = image; return { digest = digest, media_type = "x" } end }, function()
    with_docker({ { match = "^push " } }, function(calls)
      local r = docker.push("127.0.0.1:5000/acme/app:0123456")
      t.eq(r, { image = "127.0.0.1:5000/acme/app:0123456", digest = digest, reference = "127.0.0.1:5000/acme/app@" .. digest })
      t.eq(asked, "127.0.0.1:5000/acme/app:0123456")
      t.eq(calls[1].stream, true)
    end)
  end)
end)

t.cases("push failures", {
  { name = "not logged in", stderr = "unauthorized: authentication required\n", code = "unauthorized" },
  { name = "no such image", stderr = "An image does not exist locally with the tag: 127.0.0.1:5000/acme/app\n", code = "not_found" },
  { name = "daemon down", stderr = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n",
    code = "unavailable" },
}, function(row)
  with_docker({ { match = "^push ", code = 1, stderr = row.stderr } }, function()
    t.raises(function() docker.push("127.0.0.1:5000/acme/app:1") end, row.code, "docker push 127.0.0.1:5000/acme/app:1: ")
  end)
end)

t.case("push dry-run pushes nothing", function()
  with_docker({}, function(calls)
    local r = docker.push("127.0.0.1:5000/acme/app:1")
    t.eq({ r.planned, r.digest, #calls }, { true, "dry-run", 0 })
  end, { dry_run = true })
end)

t.case("login: the password goes on stdin only, registered first", function()
  local pw = "login-pw-" .. tostring(hoist.now())
  with_docker({ { match = "^login " } }, function(calls)
    t.eq(docker.login { registry = "127.0.0.1:5001", username = "hoist", password = pw }, { registry = "127.0.0.1:5001", username = "hoist" })
    local spec = calls[1]
    t.eq({ spec[2], spec[3], spec[4], spec[5], spec[6] }, { "login", "--username", "hoist", "--password-stdin", "127.0.0.1:5001" })
    t.eq(spec.stdin, pw)
    t.no_match(table.concat(spec, " "), pw)
    t.ok(hoist.scrub(pw) ~= pw, "registered as a secret")
  end)
end)

t.case("login: wrong credentials are unauthorized, without the password in the error", function()
  local pw = "wrong-pw-" .. tostring(hoist.now())
  with_docker({ { match = "^login ", code = 1,
    stderr = "Error response from daemon: login attempt to http://127.0.0.1:5001/v2/ failed with status: 401 Unauthorized\n" } }, function()
    local err = t.raises(function() docker.login { registry = "127.0.0.1:5001", username = "hoist", password = pw } end, "unauthorized", "401")
    t.no_match(tostring(err), pw)
  end)
end)

t.cases("login: bad options", {
  { opts = { registry = "r", username = "u" }, pattern = "option 'password' is required" },
  { opts = { username = "u", password = "pass-word" }, pattern = "option 'registry' is required" },
  { opts = { registry = "r", password = "pass-word" }, pattern = "option 'username' is required" },
  { opts = { registry = "r", username = "u", password = 5 }, pattern = "option 'password' must be a string" },
}, function(row)
  t.raises(function() docker.login(row.opts) end, "invalid_argument", row.pattern)
end)

t.case("login and logout dry-run run nothing", function()
  with_docker({}, function(calls)
    local r = docker.login { registry = "127.0.0.1:5001", username = "hoist", password = "dry-pw-value" }
    t.eq(r.planned, true)
    t.no_match(table.concat(r.argv, " "), "dry-pw-value")
    t.eq(docker.logout("127.0.0.1:5001").planned, true)
    t.eq(#calls, 0)
  end, { dry_run = true })
end)
