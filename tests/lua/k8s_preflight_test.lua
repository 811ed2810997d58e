-- The kubernetes target's preflight through container@1, before the build: what the deploy
-- will write is sent as a server-side dry run, so a user without the roles to write it and a
-- manifest the server refuses fail in about a second with exit 2, naming the object and the
-- server's reason, and nothing is built, pushed or written.
-- Needs the Kubernetes emulator of tests/env (its read-only context hoist-emulator-viewer).
local t = require "hoist.test"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")
local cluster = dofile(here .. "/k8s_cluster.lua")
local E = os.getenv

local STATE = support.tmpdir("hoist-k8s-preflight")
local SERVICE = ("pf-%x"):format(math.random(0, 0xffffff))

local function run(sets)
  local args = { "run", "container@1", "--no-color", "--state-dir", STATE, "--set", "target=kubernetes",
                 "--set", "image=127.0.0.1:5000/hoist-k8s-preflight/app", "--set", "context=" .. support.root .. "/examples/app",
                 "--set", "name=" .. SERVICE, "--set", "namespace=default", "--set", "scan=off" }
  for k, v in pairs(sets) do args[#args + 1] = "--set"; args[#args + 1] = k .. "=" .. v end
  return support.run_hoist(args, { env = { KUBECONFIG = E("KUBECONFIG") }, timeout = 120 })
end

local function nothing_written()
  local c = hoist.k8s.client {}
  for _, kind in ipairs { { "Service", "v1" }, { "Deployment", "apps/v1" }, { "Lease", "coordination.k8s.io/v1" } } do
    local name = kind[1] == "Lease" and ("hoist-lock-deployment-" .. SERVICE) or SERVICE
    t.eq(c:get { kind = kind[1], api_version = kind[2], name = name, namespace = "default", missing_ok = true }, nil,
      kind[1] .. " " .. name .. " was not written")
  end
end

t.case("a user who may only read is refused before the build, naming what it may not write", function()
  cluster.need()
  local r = run { kube_context = "hoist-emulator-viewer" }
  t.eq(r.code, 2, r.stderr)
  t.match(r.stderr, "the deploy would be refused")
  t.match(r.stderr, 'User "hoist%-viewer" cannot patch resource')
  t.no_match(r.stderr, "stage build", "nothing was built")
  nothing_written()
end)

t.case("a manifest the server refuses is refused before the build, with the server's reason", function()
  cluster.need()
  local file = STATE .. "/bad.yaml"
  support.write(file, ([[
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: b}}
    spec:
      containers: [{name: web, image: busybox}]
]]):format(SERVICE))
  local r = run { manifests = file }
  t.eq(r.code, 2, r.stderr)
  t.match(r.stderr, "document 1 %(Deployment " .. SERVICE:gsub("%-", "%%-") .. ", apiVersion apps/v1%)")
  t.match(r.stderr, "`selector` does not match template `labels`")
  t.no_match(r.stderr, "stage build", "nothing was built")
  nothing_written()
end)
