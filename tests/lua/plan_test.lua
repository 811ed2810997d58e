-- `hoist plan --matrix`: slices that never share a service, the GitHub Actions matrix (JSON for
-- strategy.matrix, max-parallel, step outputs through hoist.ci), the Kubernetes Jobs (a
-- ConfigMap and one Job per slice, credentials by Secret reference only), and bad input
-- refused with exit 2. No cluster and no Docker here: plan_matrix_test.lua runs the plans.
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

local dir = support.tmpdir("hoist-matrix-plan")
-- A pipeline with the fleet interface of container@1 (services, only, artifacts_out,
-- artifacts) and a secret parameter read from a variable.
local PIPE = dir .. "/fleet.lua"
support.write(PIPE, [[
return hoist.pipeline.define {
  name = "fleet-fake", version = "0.1.0",
  params = {
    services = { type = "list", default = {} },
    targets = { type = "list" },
    only = { type = "list" },
    artifacts = { type = "string" },
    artifacts_out = { type = "string" },
    registry_password = { type = "string", secret = true, env = "HOIST_REGISTRY_PASSWORD" },
    target = { type = "string", default = "local" },
  },
  stages = { { name = "noop", run = function() end } },
}
]])
-- The same without a build: it declares no artifacts_out.
local DEPLOY_ONLY = dir .. "/deploy-only.lua"
support.write(DEPLOY_ONLY, (support.must_read(PIPE):gsub("    artifacts_out = { type = \"string\" },\n", "")))

-- ... and without targets.
local NO_TARGETS = dir .. "/no-targets.lua"
support.write(NO_TARGETS, (support.must_read(PIPE):gsub("    targets = { type = \"list\" },\n", "")))

local function params_file(name, value)
  local path = dir .. "/" .. name
  support.write(path, hoist.json.encode(value))
  return path
end

local function services(...)
  local out = {}
  for i, n in ipairs { ... } do out[i] = { name = n, image = "127.0.0.1:5000/hoist-matrix/" .. n } end
  return out
end

local FLEET = params_file("fleet.json", { target = "kubernetes", services = services("api", "web", "worker", "cron", "mail") })
local SECRET = "hoist-matrix-known-secret-5c1e"

local function plan(args, env)
  local argv = { "plan", "--matrix" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return support.run_hoist(argv, { env = env or { HOIST_REGISTRY_PASSWORD = SECRET, GITHUB_ACTIONS = "" }, cwd = dir })
end

local function github(args)
  local r = plan(args)
  t.eq(r.code, 0, r.stderr)
  return hoist.json.decode(r.stdout)
end

t.case("github: one service per slice by default, each slice's hoist run, max-parallel all", function()
  local g = github { DEPLOY_ONLY, "--params-file", FLEET }
  t.eq(#g.matrix.include, 5)
  t.eq(g["max-parallel"], 5)
  t.eq(g.build, nil)
  t.eq(g.matrix.include[2], { slice = "2", services = "web",
    command = "hoist run " .. DEPLOY_ONLY .. " --params-file " .. FLEET .. " --set only=web" })
end)

t.cases("github: slices never share a service", {
  { name = "--slice-size 2", args = { "--slice-size", "2" }, want = { "api,web", "worker,cron", "mail" } },
  { name = "--slices 2", args = { "--slices", "2" }, want = { "api,web,worker", "cron,mail" } },
  { name = "--slices 5", args = { "--slices", "5" }, want = { "api", "web", "worker", "cron", "mail" } },
  { name = "--slice-size 5", args = { "--slice-size", "5", "--max-parallel", "3" }, want = { "api,web,worker,cron,mail" }, mp = 1 },
  { name = "--max-parallel 2", args = { "--slice-size", "1", "--max-parallel", "2" }, want = { "api", "web", "worker", "cron", "mail" }, mp = 2 },
}, function(row)
  local args = { DEPLOY_ONLY, "--params-file", FLEET }
  for _, a in ipairs(row.args) do args[#args + 1] = a end
  local g = github(args)
  local got, seen = {}, {}
  for i, row_ in ipairs(g.matrix.include) do
    got[i] = row_.services
    t.eq(row_.slice, tostring(i))
    t.match(row_.command, "%-%-set only=" .. row_.services:gsub("%p", "%%%0") .. "$")
    for s in row_.services:gmatch("[^,]+") do
      t.eq(seen[s], nil, s .. " in two slices")
      seen[s] = true
    end
  end
  t.eq(got, row.want)
  t.eq(g["max-parallel"], row.mp or #row.want)
end)

t.case("github: a pipeline that builds gets one build run with artifacts_out; the slices deploy its digests", function()
  local g = github { PIPE, "--params-file", FLEET, "--slices", "2", "--set", "verify_timeout=30" }
  t.eq(g.build.artifacts, "hoist-artifacts.json")
  t.eq(g.build.command, "hoist run " .. PIPE .. " --params-file " .. FLEET .. " --set verify_timeout=30 --set artifacts_out=hoist-artifacts.json")
  for _, row in ipairs(g.matrix.include) do
    t.match(row.command, "%-%-set verify_timeout=30 %-%-set only=[%w,]+ %-%-set artifacts=hoist%-artifacts%.json$")
  end
  -- artifacts given: nothing left to build
  local d = github { PIPE, "--params-file", FLEET, "--set", "artifacts=digests.json" }
  t.eq(d.build, nil)
end)

t.case("github: one slice per target with a targets list", function()
  local f = params_file("targets.json", { image = "127.0.0.1:5000/hoist-matrix/one", targets = { "local", "kubernetes" } })
  local g = github { DEPLOY_ONLY, "--params-file", f }
  t.eq(#g.matrix.include, 2)
  t.eq(g.matrix.include[2].slice, "kubernetes")
  t.match(g.matrix.include[2].command, "%-%-set target=kubernetes$")
end)

t.case("github: under GitHub Actions the matrix and max-parallel are step outputs (hoist.ci), fromJSON-ready", function()
  local out, summary = dir .. "/github_output", dir .. "/github_summary"
  support.write(out, "")
  support.write(summary, "")
  local r = plan({ PIPE, "--params-file", FLEET, "--slice-size", "3", "--max-parallel", "1" },
    { GITHUB_ACTIONS = "true", GITHUB_OUTPUT = out, GITHUB_STEP_SUMMARY = summary, HOIST_REGISTRY_PASSWORD = SECRET })
  t.match(support.must_read(summary), "hoist plan: 2 slices of .-, at most 1 at once, after one build %(hoist%-artifacts%.json%)\n\n"
    .. "| slice | services |\n|%-%-%-|%-%-%-|\n| 1 | api,web,worker |\n| 2 | cron,mail |")
  t.eq(r.code, 0, r.stderr)
  local outputs = {}
  for k, v in support.must_read(out):gmatch("([%w_%-]+)=([^\n]*)\n") do outputs[k] = v end
  local m = hoist.json.decode(outputs.matrix)
  t.eq(#m.include, 2)
  t.eq(m.include[1].services, "api,web,worker")
  t.eq(outputs["max-parallel"], "1")
  t.eq(outputs.artifacts, "hoist-artifacts.json")
  t.match(outputs["build-command"], "artifacts_out=hoist%-artifacts%.json$")
  t.eq(hoist.json.decode(r.stdout).matrix, m)
end)

t.case("github: --out writes matrix.json too", function()
  local out = dir .. "/out-github"
  local r = plan { DEPLOY_ONLY, "--params-file", FLEET, "--out", out }
  t.eq(r.code, 0, r.stderr)
  t.eq(hoist.json.decode(support.must_read(out .. "/matrix.json")), hoist.json.decode(r.stdout))
end)

local function jobs(args)
  local r = plan(args)
  t.eq(r.code, 0, r.stderr)
  t.no_match(r.stdout .. r.stderr, SECRET)
  return hoist.yaml.decode_all(r.stdout), r
end

t.case("jobs: a ConfigMap with the params file and the digests, one Job per slice, secrets by reference only", function()
  local digests = {}
  for _, n in ipairs { "api", "web", "worker", "cron", "mail" } do digests[n] = "127.0.0.1:5000/hoist-matrix/" .. n .. "@sha256:" .. ("a"):rep(64) end
  local artifacts = params_file("artifacts.json", digests)
  local docs = jobs { PIPE, "--params-file", FLEET, "--format", "jobs", "--slice-size", "2", "--image", "hoist-test/hoist:dev",
    "--secret", "hoist-matrix-registry", "--secret", "hoist-matrix-kube", "--artifacts", artifacts, "--name", "hoist-matrix-x",
    "--namespace", "hoist-matrix-ns", "--ttl", "600" }
  t.eq(#docs, 4)
  local cm = docs[1]
  t.eq(cm.kind, "ConfigMap")
  t.eq(cm.metadata.name, "hoist-matrix-x-params")
  t.eq(cm.metadata.namespace, "hoist-matrix-ns")
  t.eq(hoist.json.decode(cm.data["params.json"]), hoist.json.decode(support.must_read(FLEET)))
  t.eq(cm.data["artifacts.json"], support.must_read(artifacts))
  local all = {}
  for i = 2, 4 do
    local j = docs[i]
    t.eq(j.apiVersion, "batch/v1")
    t.eq(j.kind, "Job")
    t.eq(j.metadata.name, "hoist-matrix-x-" .. (i - 1))
    t.eq(j.metadata.labels["hoist.dev/plan"], "hoist-matrix-x")
    t.eq(j.metadata.labels["hoist.dev/slice"], tostring(i - 1))
    t.eq(j.metadata.annotations["hoist.dev/secret-keys"], "HOIST_REGISTRY_PASSWORD")
    t.eq(j.spec.backoffLimit, 0)
    t.eq(j.spec.ttlSecondsAfterFinished, 600)
    local pod = j.spec.template.spec
    t.eq(pod.restartPolicy, "Never")
    t.eq(j.spec.template.metadata.labels["hoist.dev/slice"], tostring(i - 1))
    local c = pod.containers[1]
    t.eq(c.image, "hoist-test/hoist:dev")
    t.eq(c.envFrom, { { secretRef = { name = "hoist-matrix-registry" } }, { secretRef = { name = "hoist-matrix-kube" } } })
    t.eq(c.env, nil)
    t.eq(c.args[1], "run")
    t.eq(c.args[2], PIPE)
    t.eq({ c.args[3], c.args[4] }, { "--params-file", "/etc/hoist/params.json" })
    local line = table.concat(c.args, " ")
    t.match(line, "%-%-set artifacts=/etc/hoist/artifacts%.json")
    all[#all + 1] = line:match("only=(%S+)")
    t.eq(pod.volumes, { { name = "plan", configMap = { name = "hoist-matrix-x-params" } } })
    t.eq(c.volumeMounts, { { name = "plan", mountPath = "/etc/hoist", readOnly = true } })
  end
  t.eq(all, { "api,web", "worker,cron", "mail" })
end)

t.case("jobs: default secret name, default plan name from the params file, --out", function()
  local out = dir .. "/out-jobs"
  local docs = jobs { DEPLOY_ONLY, "--params-file", FLEET, "--format", "jobs", "--image", "h:1", "--out", out }
  t.eq(docs[2].metadata.name, "hoist-fleet-1")
  t.eq(docs[2].spec.template.spec.containers[1].envFrom, { { secretRef = { name = "hoist-credentials" } } })
  t.eq(hoist.yaml.decode_all(support.must_read(out .. "/hoist-fleet.yaml")), docs)
end)

local withsecret = params_file("with-secret.json", { services = services("api"), registry_password = SECRET })
local entry_secret = params_file("entry-secret.json", { services = { { name = "api", registry_password = SECRET } } })
local not_object = params_file("not-object.json", { "a", "b" })
local partial = params_file("partial.json", { api = "127.0.0.1:5000/hoist-matrix/api@sha256:" .. ("c"):rep(64) })
local dup = params_file("dup.json", { services = { { name = "api" }, { name = "web" }, { name = "api" } } })
local none = params_file("none.json", { target = "local" })
local empty = params_file("empty.json", { services = {} })
local noname = params_file("noname.json", { services = { { image = "x" } } })
local both = params_file("both.json", { services = services("api"), targets = { "local" } })
local dup_target = params_file("dup-target.json", { targets = { "local", "local" } })

t.cases("bad input is refused with exit 2, named", {
  { name = "no services", args = { DEPLOY_ONLY, "--params-file", none }, err = "names no services" },
  { name = "an empty services list", args = { DEPLOY_ONLY, "--params-file", empty }, err = "names no services" },
  { name = "a service named twice", args = { DEPLOY_ONLY, "--params-file", dup }, err = 'services names "api" twice %(entries 1 and 3%)' },
  { name = "a target named twice", args = { DEPLOY_ONLY, "--params-file", dup_target }, err = 'targets names "local" twice' },
  { name = "a service without a name", args = { DEPLOY_ONLY, "--params-file", noname }, err = "services%[1%].- has no name" },
  { name = "targets for a pipeline without them", args = { NO_TARGETS, "--params-file", dup_target }, err = "has no `targets` parameter" },
  { name = "services and targets", args = { DEPLOY_ONLY, "--params-file", both }, err = "both services and targets" },
  { name = "--slices above the services", args = { DEPLOY_ONLY, "--params-file", FLEET, "--slices", "6" }, err = "%-%-slices 6 is out of range: 1 to 5" },
  { name = "--slice-size above the services", args = { DEPLOY_ONLY, "--params-file", FLEET, "--slice-size", "9" }, err = "%-%-slice%-size 9 is out of range" },
  { name = "--slices 0", args = { DEPLOY_ONLY, "--params-file", FLEET, "--slices", "0" }, err = "%-%-slices" },
  { name = "--max-parallel 0", args = { DEPLOY_ONLY, "--params-file", FLEET, "--max-parallel", "0" }, err = "%-%-max%-parallel" },
  { name = "both slice options", args = { DEPLOY_ONLY, "--params-file", FLEET, "--slices", "2", "--slice-size", "2" }, err = "not both" },
  { name = "an unknown pipeline", args = { "nosuch@1", "--params-file", FLEET }, err = 'no bundled pipeline named "nosuch"' },
  { name = "an unshipped version", args = { "container@9", "--params-file", FLEET }, err = "container@9 is not shipped" },
  { name = "no --params-file", args = { DEPLOY_ONLY }, err = "%-%-params%-file is required" },
  { name = "a missing params file", args = { DEPLOY_ONLY, "--params-file", dir .. "/nope.json" }, err = "no such file" },
  { name = "only given to the plan", args = { DEPLOY_ONLY, "--params-file", FLEET, "--set", "only=api" }, err = "`only` is what each slice sets" },
  { name = "an unknown format", args = { DEPLOY_ONLY, "--params-file", FLEET, "--format", "gitlab" }, err = "%-%-format" },
  { name = "jobs without --image", args = { DEPLOY_ONLY, "--params-file", FLEET, "--format", "jobs" }, err = "needs %-%-image" },
  { name = "jobs of a build without its digests", args = { PIPE, "--params-file", FLEET, "--format", "jobs", "--image", "h:1" },
    err = "build once first %(hoist run .- artifacts_out=hoist%-artifacts%.json%) and pass %-%-artifacts" },
  { name = "jobs with a secret in the params file", args = { DEPLOY_ONLY, "--params-file", withsecret, "--format", "jobs", "--image", "h:1" },
    err = "holds the secret parameter registry_password: it would be written into a ConfigMap" },
  { name = "jobs with a secret in a services entry", args = { DEPLOY_ONLY, "--params-file", entry_secret, "--format", "jobs", "--image", "h:1" },
    err = "holds the secret parameter services%[1%] %(api%): registry_password: it would be written into a ConfigMap" },
  { name = "jobs with artifacts that are not JSON", args = { PIPE, "--params-file", FLEET, "--format", "jobs", "--image", "h:1", "--artifacts", not_object },
    err = "%-%-artifacts is not a JSON object" },
  { name = "jobs with artifacts missing services", args = { PIPE, "--params-file", FLEET, "--format", "jobs", "--image", "h:1", "--artifacts", partial },
    err = "%-%-artifacts records no image for web, worker, cron, mail" },
  { name = "a bad plan name", args = { DEPLOY_ONLY, "--params-file", FLEET, "--name", "Bad_Name" }, err = "must be a DNS label" },
}, function(row)
  local r = plan(row.args)
  t.eq(r.code, 2, r.stdout .. r.stderr)
  t.match(r.stderr, row.err)
  t.eq(r.stdout, "")
  t.no_match(r.stderr, SECRET)
end)

t.case("plan without --matrix says what to write", function()
  local r = support.run_hoist({ "plan", DEPLOY_ONLY, "--params-file", FLEET }, { cwd = dir })
  t.eq(r.code, 2)
  t.match(r.stderr, "hoist plan %-%-matrix PIPELINE")
end)

t.case("container@1: the build run builds, scans and pushes only (deploy=false); the slices deploy the digests", function()
  local f = params_file("c1.json", { target = "kubernetes", services = services("api", "web", "worker") })
  local g = github { "container@1", "--params-file", f, "--slices", "2" }
  t.eq(g.build.command, "hoist run container@1 --params-file " .. f .. " --set artifacts_out=hoist-artifacts.json --set deploy=false")
  t.eq(g.matrix.include[1].command, "hoist run container@1 --params-file " .. f .. " --set only=api,web --set artifacts=hoist-artifacts.json")
  -- deploy=false with artifacts has nothing to do: refused before anything runs
  support.write(dir .. "/digests.json", hoist.json.encode { api = "127.0.0.1:5000/hoist-matrix/api@sha256:" .. ("b"):rep(64) })
  local r = support.run_hoist({ "run", "container@1", "--params-file", f, "--set", "only=api", "--set", "deploy=false",
                                "--set", "artifacts=" .. dir .. "/digests.json", "--state-dir", dir .. "/state" }, { cwd = dir })
  t.eq(r.code, 2, r.stdout .. r.stderr)
  t.match(r.stderr, "deploy=false with artifacts: nothing would be built and nothing deployed")
end)

t.case("examples/fleet-matrix: the workflow's plan step makes the matrix its deploy job reads with fromJSON", function()
  local wf = hoist.yaml.decode(support.must_read(support.root .. "/examples/fleet-matrix/workflow.yml"))
  local plan_step
  for _, s in ipairs(wf.jobs.plan.steps) do if s.id == "plan" then plan_step = s end end
  t.eq(wf.jobs.plan.outputs.matrix, "${{ steps.plan.outputs.matrix }}")
  t.eq(wf.jobs.deploy.needs, { "plan", "build" })
  t.eq(wf.jobs.deploy.strategy.matrix, "${{ fromJSON(needs.plan.outputs.matrix) }}")
  t.eq(wf.jobs.deploy.strategy["max-parallel"], "${{ fromJSON(needs.plan.outputs.max-parallel) }}")
  t.eq(wf.jobs.build.steps[3].run, "${{ needs.plan.outputs.build-command }}")
  local argv = {}
  for w in plan_step.run:gmatch("%S+") do argv[#argv + 1] = w end
  t.eq({ argv[1], argv[2], argv[3] }, { "hoist", "plan", "--matrix" })
  table.remove(argv, 1)
  for i, w in ipairs(argv) do if w == '"$PARAMS"' then argv[i] = support.root .. "/" .. wf.env.PARAMS end end
  local out = support.root .. "/" .. wf.env.PARAMS
  local r = support.run_hoist(argv, { cwd = dir, env = { GITHUB_ACTIONS = "" } })
  t.eq(r.code, 0, r.stderr)
  local g = hoist.json.decode(r.stdout)
  local got = {}
  for i, row in ipairs(g.matrix.include) do got[i] = row.services end
  t.eq(got, { "api,web", "worker,mail", "search" })
  t.eq(g["max-parallel"], 2)
  t.match(g.build.command, "%-%-params%-file " .. out:gsub("%p", "%%%0") .. " %-%-set artifacts_out=hoist%-artifacts%.json %-%-set deploy=false$")
end)
