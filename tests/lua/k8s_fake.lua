-- tests/k8s/fake_apiserver.py for the hoist.k8s tests (loaded by them; not a test file): one
-- server per test file, started on first use, ended with the run; a kubeconfig for it.
local F = {}

F.TOKEN = "fake-apiserver-token"

local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local SCRIPT = support.root .. "/tests/k8s/fake_apiserver.py"

local base, dir

--- The server's base URL and a folder for the test's files.
---@return string base, string dir
function F.start()
  if base then return base, dir end
  dir = support.tmpdir("hoist-k8s")
  local port_file = dir .. "/port"
  local task = hoist.spawn(hoist.exec, { "python3", SCRIPT, "--port-file", port_file, "--token", F.TOKEN,
    "--lifetime", "600", timeout = 700 })
  for _ = 1, 200 do
    local port = support.read(port_file)
    if port then
      base = "http://127.0.0.1:" .. port
      return base, dir
    end
    if task:status() ~= "running" then error("fake_apiserver.py exited early: " .. tostring(task:wait().stderr)) end
    hoist.sleep(0.05)
  end
  error("fake_apiserver.py did not start within 10 s")
end

--- A kubeconfig `<name>.yaml` for the server, context "fake" (namespace "team"), whose user
--- is `user` (a YAML mapping; default: the server's token).
---@param name string
---@param user? string
---@return string path
function F.kubeconfig(name, user)
  F.start()
  local path = dir .. "/" .. name .. ".yaml"
  support.write(path, ([[
apiVersion: v1
kind: Config
current-context: fake
clusters: [{name: fake, cluster: {server: "%s"}}]
contexts: [{name: fake, context: {cluster: fake, user: u, namespace: team}}]
users:
- name: u
  user: %s
]]):format(base, user or ("{token: %s}"):format(F.TOKEN)))
  return path
end

--- POST /_fake/<what>: drop, compact, throttle?n=N, reset.
function F.control(what) hoist.http.post(F.start() .. "/_fake/" .. what, { body = "" }) end

--- What the server was asked, in order.
function F.requests() return hoist.http.get(F.start() .. "/_fake/requests").json end

return F
