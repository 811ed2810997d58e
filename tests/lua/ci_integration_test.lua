-- The GitHub Action (action.yml) and the Azure Pipelines template (ci/azure-pipelines/hoist.yml):
-- their YAML structure, and their own shell scripts (taken from the YAML) run in a simulated
-- runner (GITHUB_* / TF_BUILD, SYSTEM_*, BUILD_*, AGENT_*) on a pure-Lua pipeline, checking
-- the masks, groups, annotations, outputs and summaries line by line. actionlint is not in
-- Debian: the structure checks here stand in for it.
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

local ACTION = hoist.yaml.decode(support.must_read(support.root .. "/action.yml"))
local TEMPLATE = hoist.yaml.decode(support.must_read(support.root .. "/ci/azure-pipelines/hoist.yml"))
local SECRET = "ci-secret-value-7f3a9"

-- A pipeline with what container@1's outputs look like, a secret parameter, and a failure on demand.
local PIPELINE = [[
return hoist.pipeline.define {
  name = "ci-demo", version = "1.0.0",
  params = {
    service = { type = "string", required = true },
    token = { type = "string", secret = true },
    fail = { type = "boolean", default = false },
  },
  stages = {
    { name = "build", run = function(ctx)
        hoist.log.info("building with token " .. tostring(ctx.params.token))
        return { image = "127.0.0.1:5000/" .. ctx.params.service .. "@sha256:0123abcd", digest = "sha256:0123abcd" }
      end },
    { name = "deploy", run = function(ctx)
        if ctx.params.fail then hoist.error { code = "rollout_failed", message = "the new version never became healthy" } end
        return { url = "http://127.0.0.1:8080", service = ctx.params.service }
      end },
    { name = "done", run = function(ctx)
        local o = ctx.outputs
        return { image = o.build.image, digest = o.build.digest, url = o.deploy.url, service = o.deploy.service,
                 sarif = "scan.sarif.json" }
      end },
  },
}
]]

local function lines_of(text)
  local out = {}
  for l in (text or ""):gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

local function bin_dir() return support.hoist_bin():match("^(.*)/[^/]*$") end

-- ${{ inputs.x }} / ${{ parameters.x }} / ${{ github.x }} in a step's env, from `values`.
local function expand(text, values)
  return (tostring(text):gsub("%${{%s*([%w_%.%-]+)%s*}}", function(name)
    local v = values[name]
    if v == nil then error("no value for ${{ " .. name .. " }}", 0) end
    return tostring(v)
  end))
end

local function step(steps, key, value)
  for _, s in ipairs(steps) do
    if s[key] == value then return s end
  end
  error(("no step with %s=%s"):format(key, value), 0)
end

-- Runs one step's script with bash: the step's env (expanded) on top of `env`.
local function run_step(s, values, env, cwd)
  local e = {}
  for k, v in pairs(env) do e[k] = v end
  for k, v in pairs(s.env or {}) do e[k] = expand(v, values) end
  local script = s.run or s.bash
  return hoist.exec { "bash", "-c", script, env = e, cwd = cwd, timeout = 120 }
end

---------------------------------------------------------------- structure

t.case("action.yml: a composite action whose expressions name its own inputs and steps", function()
  t.ok(type(ACTION.name) == "string" and type(ACTION.description) == "string", "name and description")
  t.eq(ACTION.runs.using, "composite")
  for _, name in ipairs { "pipeline", "params", "secrets", "version", "build-from-source", "report-artifact" } do
    t.ok(ACTION.inputs[name] and ACTION.inputs[name].description, "input " .. name)
  end
  t.eq(ACTION.inputs.pipeline.required, true)
  local ids = {}
  for _, s in ipairs(ACTION.runs.steps) do
    t.ok((s.run ~= nil) ~= (s.uses ~= nil), "a step runs a script or uses an action: " .. tostring(s.name))
    if s.run then t.eq(s.shell, "bash", "a composite run step names its shell") end
    if s.id then ids[s.id] = true end
    -- inputs reach scripts through env only: an expression inside a script is an injection
    if s.run then t.no_match(s.run, "${{", "no expression inside the script of " .. tostring(s.name)) end
  end
  local text = support.must_read(support.root .. "/action.yml")
  for name in text:gmatch("inputs%.([%w_%-]+)") do t.ok(ACTION.inputs[name], "declared input " .. name) end
  for id in text:gmatch("steps%.([%w_%-]+)%.outputs") do t.ok(ids[id], "step id " .. id) end
  for _, name in ipairs { "run-id", "status", "image", "digest", "url", "sarif", "report", "outputs-json" } do
    t.match(ACTION.outputs[name].value, "^%${{ steps%.run%.outputs%.[%w_]+ }}$", "output " .. name)
  end
end)

t.case("the Azure Pipelines template: typed parameters, and expressions only in env and fields", function()
  local declared = {}
  for _, p in ipairs(TEMPLATE.parameters) do
    t.ok(type(p.name) == "string" and type(p.type) == "string", "parameter " .. tostring(p.name))
    declared[p.name] = p
  end
  for _, name in ipairs { "pipeline", "params", "secrets", "version", "buildFromSource", "reportArtifact",
                          "serviceConnectionId", "clientId", "tenantId" } do
    t.ok(declared[name], "parameter " .. name)
  end
  local text = support.must_read(support.root .. "/ci/azure-pipelines/hoist.yml")
  for name in text:gmatch("parameters%.([%w_]+)") do t.ok(declared[name], "declared parameter " .. name) end
  local run = step(TEMPLATE.steps, "name", "${{ parameters.stepName }}")
  t.no_match(run.bash, "${{", "no template expression inside the script")
  t.eq(run.env.SYSTEM_ACCESSTOKEN, "$(System.AccessToken)", "the job token is mapped for the idToken")
  t.match(run.env.AZURESUBSCRIPTION_SERVICE_CONNECTION_ID, "parameters%.serviceConnectionId")
end)

---------------------------------------------------------------- GitHub Actions

local function github_env(dir)
  support.write(dir .. "/output", "")
  support.write(dir .. "/summary", "")
  return { PATH = bin_dir() .. ":" .. os.getenv("PATH"), GITHUB_ACTIONS = "true", TF_BUILD = "",
           GITHUB_OUTPUT = dir .. "/output", GITHUB_STEP_SUMMARY = dir .. "/summary", GITHUB_PATH = dir .. "/path",
           RUNNER_TEMP = dir .. "/tmp", GITHUB_WORKSPACE = dir .. "/work", NO_COLOR = "1",
           GITHUB_SERVER_URL = "https://github.com", GITHUB_REPOSITORY = "o/app", HOIST_LUA_PATH = os.getenv("HOIST_LUA_PATH") or "" }
end

local function action_values(dir, inputs)
  local values = { ["github.action_path"] = support.root, ["github.action_repository"] = "o/hoist" }
  for name, spec in pairs(ACTION.inputs) do values["inputs." .. name] = inputs[name] or spec.default or "" end
  return values
end

local function action_run(inputs)
  local dir = support.tmpdir("hoist-ci-gh")
  hoist.fs.mkdir(dir .. "/tmp")
  hoist.fs.mkdir(dir .. "/work")
  support.write(dir .. "/work/deploy.lua", PIPELINE)
  local env = github_env(dir)
  local r = run_step(step(ACTION.runs.steps, "id", "run"), action_values(dir, inputs), env, dir .. "/work")
  r.output = support.must_read(dir .. "/output")
  r.summary = support.must_read(dir .. "/summary")
  r.dir = dir
  return r
end

t.case("GitHub: the secret masked first, a group per stage, every output, the summary, the report", function()
  local r = action_run { pipeline = "deploy.lua", params = "service=shop\n\n# a comment\n",
                         secrets = "token=" .. SECRET .. "\n", ["report-artifact"] = "hoist-report" }
  t.eq(r.code, 0, r.stderr)
  local out = lines_of(r.stdout)
  t.eq(out[1], "::add-mask::" .. SECRET, "the mask is the first line")
  local groups = {}
  for _, l in ipairs(out) do groups[#groups + 1] = l:match("^::group::(.*)") end
  t.eq(groups, { "build", "deploy", "done" })
  local o = {}
  for _, l in ipairs(lines_of(r.output)) do
    local k, v = l:match("^([%w_]+)=(.*)$")
    if k then o[k] = v end
  end
  t.match(o.run_id, "^%d")
  t.eq(o.status, "succeeded")
  t.eq(o.digest, "sha256:0123abcd")
  t.eq(o.image, "127.0.0.1:5000/shop@sha256:0123abcd")
  t.eq(o.url, "http://127.0.0.1:8080")
  t.eq(o.sarif, "scan.sarif.json")
  t.eq(o.build_digest, "sha256:0123abcd", "each stage's outputs as STAGE_KEY")
  t.eq(hoist.json.decode(o.outputs_json).deploy_service, "shop")
  t.match(o.report, "hoist%-report%-" .. o.run_id:gsub("%p", "%%%0") .. "%.html$")
  t.match(support.must_read(o.report), "<html")
  t.match(r.summary, "ci%-demo")
  t.match(r.summary, "succeeded")
  for what, text in pairs { stdout = table.concat(out, "\n", 2), stderr = r.stderr, output = r.output, summary = r.summary } do
    t.no_match(text, SECRET, "the secret is only in ::add-mask:: (" .. what .. ")")
  end
  t.match(r.stderr, "building with token %*%*%*")
end)

t.case("GitHub: a failed stage is an ::error annotation at the script's line, the step fails", function()
  local r = action_run { pipeline = "deploy.lua", params = "service=shop\nfail=true" }
  t.eq(r.code, 1, r.stderr)
  local found
  for _, l in ipairs(lines_of(r.stdout)) do found = found or l:match("^::error (.*)$") end
  t.match(found, "^file=deploy%.lua,line=%d+,title=ci%-demo 1%.0%.0%%3A stage deploy failed::rollout_failed: stage deploy failed: the new version never became healthy$")
  t.match(r.output, "\nstatus=failed\n")
  t.match(r.summary, "rollout_failed")
end)

t.case("GitHub: a params line without '=' stops before hoist runs", function()
  local r = action_run { pipeline = "deploy.lua", params = "service=shop\noops" }
  t.eq(r.code, 2)
  t.match(r.stdout, "::error title=hoist::params: 'oops' is not NAME=value")
  t.eq(r.output, "")
end)

-- A package folder as a release holds it: an archive of the package's layout and its .sha256.
-- Its hoist is a stand-in that prints the version (package_test.lua installs the real one).
local function fake_release(version)
  local dir = support.tmpdir("hoist-ci-release")
  local arch = hoist.exec({ "uname", "-m", check = true }).stdout:match("%S+")
  local top = ("hoist-%s-linux-%s"):format(version, arch)
  hoist.fs.write_file(dir .. "/" .. top .. "/bin/hoist", ('#!/bin/sh\necho "hoist %s"\n'):format(version))
  hoist.exec { "chmod", "+x", dir .. "/" .. top .. "/bin/hoist", check = true }
  hoist.exec { "tar", "-czf", top .. ".tar.gz", top, cwd = dir, check = true }
  hoist.exec { "sh", "-c", "sha256sum " .. top .. ".tar.gz > " .. top .. ".tar.gz.sha256", cwd = dir, check = true }
  return dir, top
end

t.case("GitHub: the install step fetches the version's package, checks its sha256, puts hoist on PATH", function()
  local version = hoist.version
  local release, top = fake_release(version)
  local dir = support.tmpdir("hoist-ci-install")
  hoist.fs.mkdir(dir .. "/tmp")
  local env = github_env(dir)
  env.PATH = os.getenv("PATH")
  local install = step(ACTION.runs.steps, "id", "install")
  local r = run_step(install, action_values(dir, { package = "tar.gz", ["package-url"] = "file://" .. release }), env, dir)
  t.eq(r.code, 0, r.stderr)
  t.match(r.stdout, "%.tar%.gz: OK\nhoist " .. version:gsub("%p", "%%%0"))
  t.eq(support.must_read(dir .. "/path"), dir .. "/tmp/hoist-" .. version .. "/" .. top .. "/bin\n")
  -- a package that does not match its checksum is refused
  support.write(release .. "/" .. top .. ".tar.gz.sha256", ("0"):rep(64) .. "  " .. top .. ".tar.gz\n")
  local dir2 = support.tmpdir("hoist-ci-install")
  hoist.fs.mkdir(dir2 .. "/tmp")
  local env2 = github_env(dir2)
  env2.PATH = os.getenv("PATH")
  local bad = run_step(install, action_values(dir2, { package = "tar.gz", ["package-url"] = "file://" .. release }), env2, dir2)
  t.eq(bad.code, 1)
  t.match(bad.stdout, "::error title=hoist::" .. top:gsub("%p", "%%%0") .. "%.tar%.gz does not match its %.sha256")
  t.eq(support.read(dir2 .. "/path"), nil, "nothing put on PATH")
end)

---------------------------------------------------------------- Azure Pipelines

local function azure_values(params)
  local values = {}
  for _, p in ipairs(TEMPLATE.parameters) do
    local v = params[p.name]
    if v == nil then v = p.default end
    if type(v) == "boolean" then v = v and "True" or "False" end
    values["parameters." .. p.name] = v or ""
  end
  return values
end

local function azure_env(dir)
  return { PATH = bin_dir() .. ":" .. os.getenv("PATH"), TF_BUILD = "True", GITHUB_ACTIONS = "",
           AGENT_TEMPDIRECTORY = dir .. "/tmp", BUILD_SOURCESDIRECTORY = dir .. "/work", BUILD_BUILDID = "42",
           SYSTEM_DEFAULTWORKINGDIRECTORY = dir .. "/work", SYSTEM_TEAMPROJECT = "proj", NO_COLOR = "1",
           SYSTEM_OIDCREQUESTURI = "", HOIST_LUA_PATH = os.getenv("HOIST_LUA_PATH") or "" }
end

local function template_run(params)
  local dir = support.tmpdir("hoist-ci-azp")
  hoist.fs.mkdir(dir .. "/tmp")
  hoist.fs.mkdir(dir .. "/work")
  support.write(dir .. "/work/deploy.lua", PIPELINE)
  local s = step(TEMPLATE.steps, "name", "${{ parameters.stepName }}")
  local values = azure_values(params)
  local env = azure_env(dir)
  -- the agent expands macros in env before the step starts
  for k, v in pairs(s.env) do env[k] = (expand(v, values):gsub("%$%(System%.AccessToken%)", "job-access-token-1234")) end
  local r = hoist.exec { "bash", "-c", s.bash, env = env, cwd = dir .. "/work", timeout = 120 }
  r.dir = dir
  return r
end

t.case("Azure Pipelines: setsecret first, ##[group] per stage, output variables, the uploaded summary, the report", function()
  local r = template_run { pipeline = "deploy.lua", params = "service=shop", secrets = "token=" .. SECRET,
                           reportArtifact = "hoist-report" }
  t.eq(r.code, 0, r.stderr)
  local out = lines_of(r.stdout)
  t.eq(out[1], "##vso[task.setsecret]" .. SECRET, "the secret is registered first")
  local groups, vars, summary = {}, {}, nil
  for _, l in ipairs(out) do
    groups[#groups + 1] = l:match("^##%[group%](.*)")
    local k, v = l:match("^##vso%[task%.setvariable variable=([%w_]+);isOutput=true;%](.*)$")
    if k then vars[k] = v end
    summary = summary or l:match("^##vso%[task%.uploadsummary%](.*)$")
  end
  t.eq(groups, { "build", "deploy", "done" })
  t.match(r.stdout, "\n##%[endgroup%]\n")
  t.eq(vars.status, "succeeded")
  t.eq(vars.digest, "sha256:0123abcd")
  t.eq(vars.url, "http://127.0.0.1:8080")
  t.eq(vars.deploy_service, "shop")
  t.match(vars.run_id, "^%d")
  t.match(vars.report, "hoist%-report/hoist%-report%-.*%.html$")
  t.match(support.must_read(vars.report), "<html")
  t.match(summary, "^" .. (r.dir .. "/tmp/hoist-summary-"):gsub("%p", "%%%0"))
  local md = support.must_read(summary)
  t.match(md, "ci%-demo")
  t.match(md, "succeeded")
  for what, text in pairs { stdout = table.concat(out, "\n", 2), stderr = r.stderr, summary = md } do
    t.no_match(text, SECRET, "the secret is only in task.setsecret (" .. what .. ")")
  end
end)

t.case("Azure Pipelines: a failed stage is a logissue error at the script's line; outputs escaped", function()
  local r = template_run { pipeline = "deploy.lua", params = "service=shop\nfail=true" }
  t.eq(r.code, 1, r.stderr)
  local issue
  for _, l in ipairs(lines_of(r.stdout)) do issue = issue or l:match("^##vso%[task%.logissue (.*)$") end
  t.match(issue, "^linenumber=%d+;sourcepath=deploy%.lua;type=error;%]ci%-demo 1%.0%.0: stage deploy failed: rollout_failed: stage deploy failed: the new version never became healthy$")
  t.match(r.stdout, "##vso%[task%.setvariable variable=status;isOutput=true;%]failed\n")
  t.eq(require("hoist.azure_pipelines").escape("a;b]c%d\r\ne"), "a%3Bb%5Dc%AZP25d%0D%0Ae")
end)

t.case("Azure Pipelines: without packageUrl or buildFromSource the install step says what is missing", function()
  local dir = support.tmpdir("hoist-ci-azp")
  hoist.fs.mkdir(dir .. "/tmp")
  local install = TEMPLATE.steps[1]
  local r = run_step({ bash = install.bash, env = install.env }, azure_values {}, azure_env(dir), dir)
  t.eq(r.code, 2)
  t.match(r.stdout, "##vso%[task%.logissue type=error%]hoist: packageUrl is not set")
end)

---------------------------------------------------------------- hoist run --secrets-env

t.case("--secrets-env: a bad line or a secret too short to mask is a usage error that never shows the value", function()
  local dir = support.tmpdir("hoist-ci-secrets")
  support.write(dir .. "/deploy.lua", PIPELINE)
  local function run(value)
    return support.run_hoist({ "run", dir .. "/deploy.lua", "--set", "service=shop", "--secrets-env", "HOIST_T_SECRETS",
                               "--state-dir", dir .. "/state" },
                             { env = { HOIST_T_SECRETS = value, GITHUB_ACTIONS = "", TF_BUILD = "", NO_COLOR = "1" } })
  end
  local bad = run("token=" .. SECRET .. "\nno-equals-" .. SECRET)
  t.eq(bad.code, 2, bad.stderr)
  t.match(bad.stderr, "%-%-secrets%-env HOIST_T_SECRETS expects key=value, got line 2 without '=' %(value not shown%)")
  t.no_match(bad.stdout .. bad.stderr, SECRET)
  local short = run("token=abc")
  t.eq(short.code, 2, short.stderr)
  t.match(short.stderr, "%-%-secrets%-env HOIST_T_SECRETS: token: a secret must be at least")
  t.no_match(short.stderr, "abc")
  local unset = support.run_hoist({ "run", dir .. "/deploy.lua", "--secrets-env", "HOIST_T_NOT_SET_ANYWHERE" }, {})
  t.eq(unset.code, 2)
  t.match(unset.stderr, "HOIST_T_NOT_SET_ANYWHERE: the variable is not set")
  -- outside CI: the value is a secret all the same, masked in the log
  local ok = run("# a comment\n\ntoken=" .. SECRET .. "\r\n")
  t.eq(ok.code, 0, ok.stderr)
  t.match(ok.stderr, "building with token %*%*%*")
  t.no_match(ok.stdout .. ok.stderr, SECRET)
end)
