-- hoist.azure.aci: the definition built from options (table of cases, no emulator needed), then
-- against the Azure emulator running real containers: create, the FQDN answering through the
-- emulator's proxy, a crash and an image that cannot be pulled failing fast with their reason
-- (the pull: while Azure's operation still retries it; the rule on instance views shaped as ACI's),
-- events and logs, a cpu change recreating the group, logs, restart, delete.
-- Needs Docker: run under `flock /tmp/hoist-docker.lock`. Skipped loudly without the
-- emulator's variables; failed instead when CI=true.
local t = require "hoist.test"
local aci = require "hoist.azure.aci"

local E = os.getenv
local CONTROL = E("HOIST_TEST_AZURE_CONTROL")
local SUB = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID")
local WHY = "the Azure emulator's variables are not set: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local RUN = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local RG = "hoist-aci-mod-" .. RUN
local IMAGE = "127.0.0.1:5002/hoist-aci-test/web:1"
local HTTPD = { "sh", "-c", "echo hello-$GREETING > /tmp/index.html; echo started; exec httpd -f -p 8000 -h /tmp" }

t.cases("the definition from options", {
  { name = "public IP with a DNS label, env and secure env",
    opts = { name = "web", image = "r.io/a:1", ports = { 8000 }, dns_label = "web-1", env = { A = "1" }, secure_env = { S = "s3cret-v" } },
    check = function(b)
      local p = b.properties
      t.eq(p.ipAddress.type, "Public")
      t.eq(p.ipAddress.dnsNameLabel, "web-1")
      t.eq(p.ipAddress.ports[1].port, 8000)
      t.eq(p.containers[1].properties.environmentVariables[1].value, "1")
      t.eq(p.containers[1].properties.environmentVariables[2].secureValue, "s3cret-v")
      t.eq(hoist.scrub("s3cret-v"), "***")
      t.eq(p.restartPolicy, "Always")
      t.eq(p.containers[1].properties.resources.requests.cpu, 1)
    end },
  { name = "private IP, registry credentials, command, restart policy",
    opts = { name = "web", image = "r.io/a:1", ports = { 80 }, ip = "private", registry = { server = "r.io", username = "u", password = "regpass-1" },
             command = { "sh", "-c", "x" }, restart_policy = "OnFailure", cpu = 2, memory = 4 },
    check = function(b)
      local p = b.properties
      t.eq(p.ipAddress.type, "Private")
      t.eq(p.imageRegistryCredentials[1].server, "r.io")
      t.eq(hoist.scrub("regpass-1"), "***")
      t.eq(p.containers[1].properties.command[3], "x")
      t.eq(p.restartPolicy, "OnFailure")
      t.eq(p.containers[1].properties.resources.requests.memoryInGB, 4)
    end },
  { name = "a managed identity pulls", opts = { name = "web", image = "r.azurecr.io/a:1", registry_identity = "/id/x" },
    check = function(b)
      t.eq(b.properties.imageRegistryCredentials[1].identity, "/id/x")
      t.eq(b.properties.imageRegistryCredentials[1].server, "r.azurecr.io")
      t.eq(b.identity.type, "UserAssigned")
      t.eq(b.properties.ipAddress, nil)
    end },
  { name = "a bad port is named", opts = { name = "web", image = "a", ports = { 0 } }, err = "ports%[1%] must be a port number" },
  { name = "a private DNS label is refused", opts = { name = "web", image = "a", ports = { 80 }, ip = "private", dns_label = "x-1" },
    err = "DNS label needs a public IP" },
  { name = "registry credentials are complete", opts = { name = "web", image = "a", registry = { server = "r" } },
    err = "registry must be" },
}, function(row)
  if row.err then
    t.raises(function() aci.definition(row.opts) end, "invalid_argument", row.err)
  else
    row.check(aci.definition(row.opts))
  end
end)

-- the instance view as ACI shows a container whose pull fails (Azure's docs and events)
local function pulling(image, failed, state, extra)
  local events = { { name = "Pulling", type = "Normal", count = failed, message = ('pulling image "%s"'):format(image) } }
  if failed > 0 then
    events[2] = { name = "Failed", type = "Warning", count = failed, firstTimestamp = "2026-12-07T10:00:01Z",
                  lastTimestamp = "2026-12-07T10:00:21Z",
                  message = ('Failed to pull image "%s": rpc error: code = 2 desc = manifest unknown'):format(image) }
    events[3] = { name = "BackOff", type = "Normal", count = failed, message = ('Back-off pulling image "%s"'):format(image) }
  end
  for _, e in ipairs(extra or {}) do events[#events + 1] = e end
  return { properties = { provisioningState = "Creating", containers = { { name = "web", properties = {
    image = image, instanceView = { restartCount = 0, currentState = state, events = events } } } } } }
end
local WAITING = { state = "Waiting", detailStatus = "ImagePullBackOff" }

t.cases("a failing pull decides once it has failed pull_failures times", {
  { name = "twice: its image, Azure's message, what to check", group = pulling("r.io/app:9", 2, WAITING),
    want = 'the image r%.io/app:9 of container web cannot be pulled: 2 failed pull%(s%) %(ImagePullBackOff%), the last: '
      .. 'Failed to pull image "r%.io/app:9": rpc error: code = 2 desc = manifest unknown%. Check the image reference' },
  { name = "once may pass (a role assignment or a tag on its way)", group = pulling("r.io/app:9", 1, WAITING) },
  { name = "once decides when asked (the operation has failed)", group = pulling("r.io/app:9", 1, WAITING), failures = 1,
    want = "1 failed pull" },
  { name = "not yet failed", group = pulling("r.io/app:9", 0, { state = "Waiting", detailStatus = "" }) },
  { name = "running after failures that passed", group = pulling("r.io/app:9", 3, { state = "Running" }) },
  { name = "the failures of the image before an update do not count", group = pulling("r.io/app:10", 0, WAITING, {
      { name = "Failed", type = "Warning", count = 5, message = 'Failed to pull image "r.io/app:9": unauthorized' } }) },
  { name = "no instance view yet", group = { properties = { containers = { { name = "web", properties = { image = "a" } } } } } },
}, function(row)
  local why = aci.pull_failure(row.group, row.failures)
  if row.want then t.match(why, row.want) else t.eq(why, nil) end
end)

t.case("a cpu or memory change needs a recreate; other changes do not", function()
  local a = aci.definition { name = "web", image = "a", cpu = 1, memory = 1 }
  t.eq(aci.needs_recreate(a, aci.definition { name = "web", image = "b", cpu = 1, memory = 1 }), nil)
  t.match(aci.needs_recreate(a, aci.definition { name = "web", image = "a", cpu = 2, memory = 1 }), "1 cpu / 1 GB to 2 cpu / 1 GB")
end)

local cred
local function need_emulator()
  if not CONTROL or CONTROL == "" then
    if E("CI") == "true" then hoist.error { code = "unavailable", message = WHY .. " (CI=true: not skipping)" } end
    t.skip("*** Azure ACI test skipped *** " .. WHY)
  end
  if not cred then
    cred = hoist.azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
      client_id = E("HOIST_TEST_AZURE_CLIENT_ID"), client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
    hoist.azure.resource_groups.ensure { name = RG, location = "westeurope", subscription = SUB, credential = cred }
    hoist.azure.providers.ensure { namespace = "Microsoft.ContainerInstance", subscription = SUB, credential = cred, poll_interval = 0.2 }
    local r = hoist.exec { "skopeo", "copy", "--dest-tls-verify=false", "--dest-creds",
      E("HOIST_TEST_REGISTRY_TOKEN_USER") .. ":" .. E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD"),
      "docker-daemon:" .. (E("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"), "docker://" .. IMAGE }
    if r.code ~= 0 then error("cannot push the test image: " .. r.stderr) end
  end
end

local function opts(name, extra)
  local o = { name = name, resource_group = RG, subscription = SUB, credential = cred, location = "westeurope", image = IMAGE,
              ports = { 8000 }, dns_label = name .. "-" .. RUN, cpu = 1, memory = 0.5, command = HTTPD, stable = 2,
              registry = { server = "127.0.0.1:5002", username = E("HOIST_TEST_REGISTRY_TOKEN_USER"),
                           password = E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD") }, poll_interval = 0.3 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- GET through the emulator's proxy, as a client on the internet reaches the FQDN
local function via_proxy(url)
  local r = hoist.exec { "curl", "-s", "-m", "5", "-x", E("HOIST_TEST_AZURE_PROXY"), url }
  return r.stdout
end

t.case("create runs the group; its FQDN answers; a cpu change recreates it; logs, restart, delete", function()
  need_emulator()
  local r = aci.create_or_update(opts("ok", { env = { GREETING = "one" }, secure_env = { TOKEN = "aci-secure-value-1" } }))
  t.eq(r.created, true)
  t.eq(r.group.properties.instanceView.state, "Running")
  t.eq(r.fqdn, ("ok-%s.westeurope.azurecontainer.io"):format(RUN))
  t.match(via_proxy("http://" .. r.fqdn .. ":8000/"), "hello%-one")
  local again = aci.create_or_update(opts("ok", { env = { GREETING = "two" }, cpu = 2 }))
  t.eq(again.recreated, true)
  t.eq(again.created, false)
  t.match(via_proxy("http://" .. r.fqdn .. ":8000/"), "hello%-two")
  t.match(aci.logs { name = "ok", resource_group = RG, subscription = SUB, credential = cred }, "started")
  aci.restart { name = "ok", resource_group = RG, subscription = SUB, credential = cred }
  t.eq(aci.delete { name = "ok", resource_group = RG, subscription = SUB, credential = cred }.deleted, true)
  t.eq(aci.delete { name = "ok", resource_group = RG, subscription = SUB, credential = cred }.deleted, false)
  t.eq(aci.get { name = "ok", resource_group = RG, subscription = SUB, credential = cred }, nil)
end)

t.case("a crashing container fails fast with its exit code, restarts, events and last log lines", function()
  need_emulator()
  local e = t.raises(function()
    aci.create_or_update(opts("crash", { command = { "sh", "-c", "echo boom-before-exit; exit 3" }, timeout = 60 }))
  end, "rollout_failed", "container group crash did not start: container crash crashed %(exit code 3")
  t.eq(e.details.reason, "crash")
  t.match(e.details.logs, "boom%-before%-exit")
  t.ok(#e.details.events > 0, "events are evidence")
  aci.delete { name = "crash", resource_group = RG, subscription = SUB, credential = cred }
end)

-- Azure retries a failing pull for minutes before the PUT's operation fails (the emulator too):
-- hoist reads the instance view while it polls the operation, and fails once the pull has
-- failed twice, the operation still running.
t.case("an image that cannot be pulled fails with reason image_pull, while Azure still retries", function()
  need_emulator()
  local bad = "127.0.0.1:5002/hoist-aci-test/none:404"
  local e = t.raises(function()
    aci.create_or_update(opts("nopull", { image = bad, timeout = 60 }))
  end, "rollout_failed", "the image " .. bad:gsub("%p", "%%%0") .. " of container nopull cannot be pulled: %d+ failed pull")
  t.eq(e.details.reason, "image_pull")
  t.match(e.message, 'the last: Failed to pull image "' .. bad:gsub("%p", "%%%0") .. '": ')
  t.match(e.message, "Check the image reference .* and the pull credential")
  local g = aci.get { name = "nopull", resource_group = RG, subscription = SUB, credential = cred }
  t.eq(g.properties.provisioningState, "Creating")
  aci.delete { name = "nopull", resource_group = RG, subscription = SUB, credential = cred }
end)

t.case("bad options are named", function()
  t.raises(function() aci.create_or_update { name = "Bad_Name", image = "a", resource_group = "rg" } end, "invalid_argument",
    "container group name")
  t.raises(function() aci.create_or_update { name = "web", image = "a" } end, "invalid_argument", "resource_group")
end)

t.case("clean up: the test's resource group goes", function()
  if not cred then t.skip("nothing was created") end
  hoist.azure.request { method = "DELETE", path = ("/subscriptions/%s/resourcegroups/%s"):format(SUB, RG), credential = cred,
                        poll_interval = 0.3 }
end)
