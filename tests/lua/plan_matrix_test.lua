-- `hoist plan --matrix` end to end (plan_test.lua checks what it writes): three services of
-- container@1 on two images, target kubernetes against the emulator of tests/env.
--   a. The GitHub matrix driven as a runner would: a bash loop runs the plan's build command
--      once (artifacts_out), then each slice's `hoist run` as a child process, at most
--      max-parallel at once; every service serves its digest. The same matrix run twice at
--      once deploys every service twice: the deploy lock (a Lease) keeps them apart.
--   b. The Jobs: the plan's ConfigMap and Jobs applied to the emulator, whose kubelet runs
--      them in containers of a hoist image built here (the binary, its libraries, the Lua
--      tree, on the busybox base); with hostNetwork they reach the registry and the API
--      server on 127.0.0.1. The Jobs deploy the build's digests into a namespace of their
--      own; their credentials come from a Secret by reference, and no pod spec holds them.
--      Two Jobs made by hand whose slices both name one service: the Lease keeps them apart.
-- Needs tests/env (Docker, registry, the Kubernetes emulator with its kubelet); skipped
-- without them, failed instead when CI=true.
local t = require "hoist.test"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")
local cluster = dofile(here .. "/k8s_cluster.lua")
local root, read, hoist_bin = support.root, support.read, support.hoist_bin
local E = os.getenv
local BASE = E("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"
local REGISTRY = E("HOIST_TEST_REGISTRY") or "127.0.0.1:5000"
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local ID = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local SLOW = { timeout = 600 }
local NAMES = { "api", "web", "wrk" }

local S = {
  prefix = "hoist-matrix-" .. ID,
  ns_a = "hoist-matrix-" .. ID .. "-a", -- the GitHub matrix deploys here
  ns_b = "hoist-matrix-" .. ID .. "-b", -- the Jobs deploy here
}

local function show(r) return ("exit %s\n--- stdout\n%s\n--- stderr\n%s"):format(tostring(r.code), r.stdout, r.stderr) end

local function need_env()
  support.need_docker("hoist plan --matrix end to end")
  cluster.need()
  if S.ready then return end
  S.dir = support.tmpdir("hoist-matrix-e2e")
  S.kube = {}
  for _, ns in ipairs { S.ns_a, S.ns_b } do
    S.kube[ns] = hoist.k8s.client { namespace = ns }
    S.kube[ns]:apply { apiVersion = "v1", kind = "Namespace", metadata = { name = ns } }
  end
  local probe = S.kube[S.ns_b]
  cluster.need_controllers(probe)
  cluster.need_kubelet(probe, REGISTRY .. "/hoist-test/busybox:latest")
  cluster.need_host_network(probe, REGISTRY .. "/hoist-test/busybox:latest")
  -- the fleet: api and wrk share image a, web has b (two builds)
  local repo = REGISTRY .. "/" .. S.prefix
  S.params = S.dir .. "/fleet.json"
  support.write(S.params, hoist.json.encode {
    target = "kubernetes", context = root .. "/examples/app", scan = "off", tag = "v1", replicas = 1,
    verify_timeout = 30, lock_timeout = 120, build_args = { BASE_IMAGE = BASE, VERSION = "v1" },
    services = {
      { name = "api", image = repo .. "/a" },
      { name = "web", image = repo .. "/b", build_args = { BASE_IMAGE = BASE, VERSION = "v1-web" } },
      { name = "wrk", image = repo .. "/a" },
    },
  })
  -- `hoist` on the PATH of the loop's shell is the binary under test
  hoist.exec { "mkdir", "-p", S.dir .. "/bin", check = true }
  hoist.exec { "ln", "-sf", hoist_bin(), S.dir .. "/bin/hoist", check = true }
  S.ready = true
end

local function plan(args)
  local argv = { "plan", "--matrix", "container@1", "--params-file", S.params }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = support.run_hoist(argv, { cwd = S.dir })
  t.eq(r.code, 0, show(r))
  return r.stdout
end

-- The "deployed" lines of a Deployment: its image, and whether its pods are ready.
local function deployment(ns, name)
  local d = S.kube[ns]:get { kind = "Deployment", name = name, missing_ok = true }
  if not d then return nil end
  return { image = d.spec.template.spec.containers[1].image, ready = (d.status or {}).readyReplicas or 0 }
end

-- Each service serves its digest in `ns`: the Deployment runs the artifacts' reference and
-- its Service answers /version with the build's VERSION.
local function check_serving(ns, artifacts)
  for _, n in ipairs(NAMES) do
    local d = deployment(ns, n)
    t.ok(d, ns .. ": no Deployment " .. n)
    t.eq(d.image, artifacts[n], ns .. "/" .. n .. " runs the digest the build recorded")
    t.match(d.image, "@sha256:%x+$")
    t.ok(d.ready >= 1, ns .. "/" .. n .. " has a ready pod")
    local url = hoist.k8s.service_url { name = n, namespace = ns, client = S.kube[ns] }
    t.ok(url, ns .. "/" .. n .. " has no address")
    local r = hoist.http.request { url = url .. "/version", timeout = 5 }
    t.eq(r.status, 200)
    t.eq(r.body, n == "web" and "v1-web" or "v1")
  end
end

-- The intervals a run held a deploy lock: {key -> {acquired, released}}, from its events
-- (the events.jsonl of a run folder, or a Job's --log-format json output).
local function held(text, into, who)
  for line in text:gmatch("[^\n]+") do
    local ok, e = pcall(hoist.json.decode, line)
    if ok and type(e) == "table" and (e.kind == "lock.acquired" or e.kind == "lock.released") then
      local key = e.fields.key
      into[key] = into[key] or {}
      local h = into[key][who] or {}
      into[key][who] = h
      h[e.kind == "lock.acquired" and "from" or "to"] = e.ts
    end
  end
end

-- No two holders of one lock key held it at the same time (ordering of the events' own
-- timestamps, no duration asserted).
local function never_at_once(locks, want_holders)
  local keys = 0
  for key, by in pairs(locks) do
    keys = keys + 1
    local list = {}
    for who, h in pairs(by) do
      t.ok(h.from and h.to, ("%s: %s took and released it (%s)"):format(key, who, hoist.json.encode(h)))
      list[#list + 1] = { who = who, from = h.from, to = h.to }
    end
    t.eq(#list, want_holders, key .. ": holders")
    table.sort(list, function(a, b) return a.from < b.from end)
    for i = 2, #list do
      t.ok(list[i].from >= list[i - 1].to, ("%s: %s took it at %.3f while %s held it until %.3f"):format(
        key, list[i].who, list[i].from, list[i - 1].who, list[i - 1].to))
    end
  end
  return keys
end

---------------------------------------------------------------- a. the GitHub matrix

-- The loop a workflow's matrix stands for: the build job once, then every slice's command,
-- at most max-parallel running; each slice's output and exit code in files of its own.
local LOOP = [[
set -u
export PATH="$1/bin:$PATH"
out=$2 max=$3
if [ -s "$out/build.cmd" ]; then
  (eval "$(cat "$out/build.cmd")") > "$out/build.log" 2>&1 || { echo "build failed: $(tail -5 "$out/build.log")"; exit 1; }
fi
i=0
while IFS= read -r cmd; do
  i=$((i + 1))
  while [ "$(jobs -rp | wc -l)" -ge "$max" ]; do wait -n || true; done
  (eval "$cmd" > "$out/slice-$i.log" 2>&1; echo $? > "$out/slice-$i.rc") &
done < "$out/slices.cmd"
wait
]]

-- Runs a GitHub matrix (the plan's JSON) with the loop above in `cwd`; returns the slice
-- results {services, code, log}.
local function drive(matrix_json, cwd, build)
  local g = hoist.json.decode(matrix_json)
  local out = cwd .. "/loop"
  hoist.exec { "mkdir", "-p", out, check = true }
  support.write(out .. "/build.cmd", build and g.build and g.build.command or "")
  local lines = {}
  for i, row in ipairs(g.matrix.include) do lines[i] = row.command end
  support.write(out .. "/slices.cmd", table.concat(lines, "\n") .. "\n")
  local r = hoist.exec { "bash", "-c", LOOP, "loop", S.dir, out, tostring(g["max-parallel"]), cwd = cwd,
                         timeout = 400, env = { KUBECONFIG = E("KUBECONFIG") } }
  t.eq(r.code, 0, show(r))
  local results = {}
  for i, row in ipairs(g.matrix.include) do
    results[i] = { services = row.services, code = tonumber(read(("%s/slice-%d.rc"):format(out, i)) or ""),
                   log = read(("%s/slice-%d.log"):format(out, i)) or "" }
  end
  return results, g
end

t.case("a. the GitHub matrix in a shell loop: one build, the slices' hoist run at most max-parallel at once; all serve", function()
  need_env()
  local json = plan { "--set", "namespace=" .. S.ns_a, "--max-parallel", "2" }
  local results, g = drive(json, S.dir, true)
  t.eq(g.build.artifacts, "hoist-artifacts.json")
  t.eq(#results, 3, "one service per slice")
  t.eq(g["max-parallel"], 2)
  -- the build and the three slices, never more than max-parallel of them running at once
  -- (ordering of the runs' own start and end events)
  -- the build run (deploy=false) skipped deploy and verify: only the slices deployed
  local edges, skipped = {}, {}
  for _, run in ipairs(hoist.fs.list(S.dir .. "/.hoist/runs")) do
    for line in support.must_read(S.dir .. "/.hoist/runs/" .. run .. "/events.jsonl"):gmatch("[^\n]+") do
      local e = hoist.json.decode(line)
      if e.kind == "run.start" then edges[#edges + 1] = { e.ts, 1 } elseif e.kind == "run.end" then edges[#edges + 1] = { e.ts, -1 } end
      if e.kind == "stage.end" and e.fields.status == "skipped" then skipped[#skipped + 1] = e.fields.stage end
    end
  end
  t.eq(skipped, { "deploy", "verify", "done" })
  t.eq(#edges, 8, "four runs, each started and ended")
  table.sort(edges, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  local running, most = 0, 0
  for _, e in ipairs(edges) do
    running = running + e[2]
    most = math.max(most, running)
  end
  t.ok(most <= 2, "at most max-parallel runs at once, saw " .. most)
  local seen = {}
  for _, r in ipairs(results) do
    t.eq(r.code, 0, r.services .. ":\n" .. r.log)
    for s in r.services:gmatch("[^,]+") do
      t.eq(seen[s], nil, s .. " is in two slices")
      seen[s] = true
      t.match(r.log, s .. " %(kubernetes%): deployed")
    end
  end
  t.eq(seen, { api = true, web = true, wrk = true })
  S.artifacts_file = S.dir .. "/hoist-artifacts.json"
  S.artifacts = hoist.json.decode(support.must_read(S.artifacts_file))
  t.ok(S.artifacts.api ~= S.artifacts.web, "two images, two digests")
  t.eq(S.artifacts.api, S.artifacts.wrk)
  check_serving(S.ns_a, S.artifacts)
end, SLOW)

t.case("a. the same matrix twice at once: every service deployed twice, never by both runs at once (the Lease)", function()
  need_env()
  if not S.artifacts then t.skip("needs the build of the case before") end
  local json = plan { "--set", "namespace=" .. S.ns_a, "--set", "artifacts=" .. S.artifacts_file, "--slices", "2" }
  local cwds, tasks = {}, {}
  for i = 1, 2 do
    cwds[i] = S.dir .. "/twice-" .. i
    hoist.exec { "mkdir", "-p", cwds[i], check = true }
    tasks[i] = hoist.spawn(function() return drive(json, cwds[i], false) end)
  end
  local locks = {}
  for i = 1, 2 do
    for _, r in ipairs(tasks[i]:wait()) do t.eq(r.code, 0, r.services .. ":\n" .. r.log) end
    for _, run in ipairs(hoist.fs.list(cwds[i] .. "/.hoist/runs")) do
      held(support.must_read(cwds[i] .. "/.hoist/runs/" .. run .. "/events.jsonl"), locks, i .. "/" .. run)
    end
  end
  t.eq(never_at_once(locks, 2), 3, "one lock per service")
  check_serving(S.ns_a, S.artifacts)
end, SLOW)

---------------------------------------------------------------- b. the Kubernetes Jobs

-- A hoist image from the binary under test: the binary (debug info stripped), the shared
-- libraries ldd names at their own paths, the Lua tree of HOIST_LUA_PATH when the binary
-- loads it from there, and a kubeconfig for the emulator whose token an exec plugin reads
-- from $HOIST_KUBE_TOKEN (the Jobs get it from a Secret). Built once per content: the label
-- hoist.test.source names it.
local function hoist_image()
  local bin = hoist_bin()
  local lua_root = E("HOIST_LUA_PATH")
  local sum = hoist.exec({ "sh", "-c", 'sha256sum "$1" | cut -c1-64; [ -z "$2" ] || tar -C "$2" -cf - stdlib scripts | sha256sum',
                           "sum", bin, lua_root or "", check = true }).stdout
  local kube_server, ca = E("HOIST_TEST_KUBE_SERVER"), support.must_read(E("HOIST_TEST_CA"))
  local source = hoist.exec({ "sha256sum", stdin = sum .. kube_server .. ca, check = true }).stdout:sub(1, 16)
  local tag = "hoist-test/hoist:dev-" .. source
  local have = hoist.exec { "docker", "image", "inspect", "-f", '{{index .Config.Labels "hoist.test.source"}}', "hoist-test/hoist:dev" }
  if have.code == 0 and have.stdout:match("%S+") == source then
    hoist.exec { "docker", "tag", "hoist-test/hoist:dev", tag, check = true }
    return tag
  end
  local ctx = support.tmpdir("hoist-matrix-image")
  local fs = ctx .. "/rootfs"
  hoist.exec { "mkdir", "-p", fs .. "/usr/local/bin", fs .. "/etc/hoist-test", fs .. "/tmp", check = true }
  hoist.exec { "chmod", "1777", fs .. "/tmp", check = true }
  hoist.exec { "strip", "--strip-debug", "-o", fs .. "/usr/local/bin/hoist", bin, check = true }
  for lib in hoist.exec({ "ldd", bin, check = true }).stdout:gmatch("(/%S+) %(0x") do
    hoist.exec { "mkdir", "-p", fs .. lib:match("^(.*)/"), check = true }
    hoist.exec { "cp", "-L", lib, fs .. lib, check = true }
  end
  local env = "KUBECONFIG=/etc/hoist-test/kubeconfig"
  if lua_root and lua_root ~= "" then
    hoist.exec { "mkdir", "-p", fs .. "/usr/share/hoist", check = true }
    hoist.exec { "cp", "-r", lua_root .. "/stdlib", lua_root .. "/scripts", fs .. "/usr/share/hoist/", check = true }
    env = env .. " HOIST_LUA_PATH=/usr/share/hoist"
  end
  local plugin = [[printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$HOIST_KUBE_TOKEN"]]
  support.write(fs .. "/etc/hoist-test/kubeconfig", hoist.yaml.encode {
    apiVersion = "v1", kind = "Config", ["current-context"] = "emulator",
    clusters = { { name = "emulator", cluster = { server = kube_server,
      ["certificate-authority-data"] = hoist.exec({ "base64", "-w0", E("HOIST_TEST_CA"), check = true }).stdout } } },
    users = { { name = "jobs", user = { exec = { apiVersion = "client.authentication.k8s.io/v1", command = "sh",
      args = { "-c", plugin }, interactiveMode = "Never" } } } },
    contexts = { { name = "emulator", context = { cluster = "emulator", user = "jobs" } } },
  })
  support.write(ctx .. "/Dockerfile", ([[
ARG BASE
FROM ${BASE}
COPY rootfs/ /
ENV %s
LABEL hoist.test.source=%s
ENTRYPOINT ["/usr/local/bin/hoist"]
]]):format(env, source))
  hoist.docker.build { context = ctx, tags = { "hoist-test/hoist:dev", tag }, build_args = { BASE = BASE } }
  hoist.exec { "rm", "-rf", ctx }
  return tag
end

-- Waits for every Job to end; returns {name -> "Complete"|"Failed"} (nil: still running).
local function wait_jobs(kube, names, seconds)
  local ended, deadline = {}, hoist.now() + seconds
  repeat
    local left = 0
    for _, n in ipairs(names) do
      if not ended[n] then
        local j = kube:get { kind = "Job", api_version = "batch/v1", name = n }
        for _, c in ipairs((j.status or {}).conditions or {}) do
          if (c.type == "Complete" or c.type == "Failed") and c.status == "True" then ended[n] = c.type end
        end
        if not ended[n] then left = left + 1 end
      end
    end
    if left > 0 then hoist.sleep(0.5) end
  until left == 0 or hoist.now() > deadline
  return ended
end

-- The output of a Job's pod (its last lines).
local function job_logs(kube, name)
  local pods = kube:list { kind = "Pod", api_version = "v1", label_selector = "job-name=" .. name }.items
  if #pods == 0 then return "(no pod)" end
  local ok, text = pcall(kube.logs, kube, { name = pods[1].metadata.name, tail_lines = 400 })
  return ok and text or ("(no logs: " .. tostring(text) .. ")")
end

t.case("b. the Jobs run hoist in containers: every Job completes, each service serves the digest, no pod spec holds a secret", function()
  need_env()
  if not S.artifacts then t.skip("needs the build of case a") end
  local kube = S.kube[S.ns_b]
  S.image = hoist_image()
  local token = E("HOIST_TEST_KUBE_TOKEN")
  hoist.secret(token)
  local token64 = hoist.exec({ "base64", "-w0", stdin = token, check = true }).stdout
  kube:apply { apiVersion = "v1", kind = "Secret", metadata = { name = "hoist-matrix-kube" }, type = "Opaque",
               data = { HOIST_KUBE_TOKEN = token64 } }
  local yaml = plan { "--format", "jobs", "--image", S.image, "--secret", "hoist-matrix-kube", "--artifacts", S.artifacts_file,
                      "--set", "namespace=" .. S.ns_b, "--slice-size", "2", "--name", S.prefix, "--namespace", S.ns_b }
  t.no_match(yaml, token)
  local docs, jobs = hoist.yaml.decode_all(yaml), {}
  t.eq(#docs, 3, "a ConfigMap and two Jobs")
  for _, d in ipairs(docs) do
    if d.kind == "Job" then
      d.spec.template.spec.hostNetwork = true -- the emulator's registry and API server are on the host's 127.0.0.1
      jobs[#jobs + 1] = d.metadata.name
    end
    kube:apply(d)
  end
  S.job_template = docs[2]
  local ended = wait_jobs(kube, jobs, 240)
  for _, n in ipairs(jobs) do t.eq(ended[n], "Complete", n .. ":\n" .. job_logs(kube, n)) end
  check_serving(S.ns_b, S.artifacts)
  -- the Jobs and their pods name the Secret, never its value
  local specs = hoist.json.encode { kube:list { kind = "Job", api_version = "batch/v1", label_selector = "hoist.dev/plan=" .. S.prefix }.items,
                                    kube:list { kind = "Pod", api_version = "v1", label_selector = "hoist.dev/plan=" .. S.prefix }.items }
  t.match(specs, '"secretRef":{"name":"hoist%-matrix%-kube"}')
  t.no_match(specs, token)
  t.no_match(specs, token64)
end, SLOW)

t.case("b. two Jobs whose slices both name api (made by hand: the plan never makes them) do not deploy it at once", function()
  need_env()
  if not S.job_template then t.skip("needs the Jobs of the case before") end
  local kube = S.kube[S.ns_b]
  local names = {}
  for i = 1, 2 do
    local j = hoist.json.decode(hoist.json.encode(S.job_template))
    j.metadata.name = ("%s-dup%d"):format(S.prefix, i)
    j.metadata.labels["hoist.dev/slice"] = "dup" .. i
    j.spec.template.metadata.labels["hoist.dev/slice"] = "dup" .. i
    local args = j.spec.template.spec.containers[1].args
    for k, a in ipairs(args) do if a:match("^only=") then args[k] = "only=api" end end
    for _, a in ipairs { "--log-format", "json", "--log-level", "debug" } do args[#args + 1] = a end
    kube:apply(j)
    names[i] = j.metadata.name
  end
  local ended = wait_jobs(kube, names, 240)
  local locks = {}
  for _, n in ipairs(names) do
    local logs = job_logs(kube, n)
    t.eq(ended[n], "Complete", n .. ":\n" .. logs)
    held(logs, locks, n)
  end
  t.eq(never_at_once(locks, 2), 1, "one lock: api's")
  check_serving(S.ns_b, S.artifacts)
end, SLOW)

t.case("clean up: namespaces, the per-content image tag, the pushed images", function()
  if not S.ready then t.skip("nothing was made") end
  for _, ns in ipairs { S.ns_a, S.ns_b } do S.kube[ns]:delete { kind = "Namespace", name = ns, missing_ok = true } end
  if S.image then hoist.exec { "docker", "rmi", S.image } end
  local refs = hoist.exec { "docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=" .. REGISTRY .. "/" .. S.prefix .. "/*" }
  for ref in refs.stdout:gmatch("%S+") do hoist.exec { "docker", "rmi", "-f", ref } end
  hoist.exec { "rm", "-rf", S.dir }
end)
