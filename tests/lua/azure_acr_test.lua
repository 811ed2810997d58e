-- hoist.azure.acr against the Azure emulator (its ACR's login server is the local token
-- registry 127.0.0.1:5002): ensure with the admin user off, admin credentials (secrets) and
-- their regeneration, geo-replication (Premium only), the AcrPull role assignment, importImage,
-- and the data plane with only an Azure credential: hoist.registry.tags/copy and docker login
-- through the Entra token -> ACR refresh token exchange. Skipped loudly without the emulator's
-- variables; failed instead when CI=true. Docker parts under `flock /tmp/hoist-docker.lock`.
local t = require "hoist.test"
local acr = require "hoist.azure.acr"

local E = os.getenv
local CONTROL = E("HOIST_TEST_AZURE_CONTROL")
local SUB = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID")
local WHY = "the Azure emulator's variables are not set: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local RUN = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local RG = "hoist-acr-" .. RUN
local REG = "hoistacr" .. RUN
local SOURCE = "127.0.0.1:5002/hoist-acr-test/src:1"

local cred
local function need_emulator()
  if not CONTROL or CONTROL == "" then
    if E("CI") == "true" then hoist.error { code = "unavailable", message = WHY .. " (CI=true: not skipping)" } end
    t.skip("*** Azure ACR test skipped *** " .. WHY)
  end
  if not cred then
    cred = hoist.azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
      client_id = E("HOIST_TEST_AZURE_CLIENT_ID"), client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
    hoist.azure.resource_groups.ensure { name = RG, location = "westeurope", subscription = SUB, credential = cred }
  end
end
local function o(extra)
  local out = { resource_group = RG, subscription = SUB, credential = cred, poll_interval = 0.2 }
  for k, v in pairs(extra) do out[k] = v end
  return out
end

t.case("ensure creates a registry with the admin user off, once; get gives its login server", function()
  need_emulator()
  local r, created = acr.ensure(o { name = REG, location = "westeurope", sku = "Basic" })
  t.eq(created, true)
  t.eq(r.properties.adminUserEnabled, false)
  t.eq(r.login_server, "127.0.0.1:5002")
  local again, created2 = acr.ensure(o { name = REG, location = "westeurope", sku = "Basic" })
  t.eq(created2, false)
  t.eq(again.id, r.id)
  t.eq(acr.get(o { name = "hoistnone" .. RUN }), nil)
end)

t.case("admin credentials: refused while the admin user is off, then secrets; regenerate replaces one", function()
  need_emulator()
  local e = t.raises(function() acr.credentials(o { registry = REG }) end, "invalid_argument", "AdminUserDisabled")
  t.match(e.message, REG)
  hoist.azure.request { method = "PATCH", credential = cred, body = { properties = { adminUserEnabled = true } },
    path = ("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerRegistry/registries/%s"):format(SUB, RG, REG) }
  local c = acr.credentials(o { registry = REG })
  t.eq(c.username, REG)
  t.eq(#c.passwords, 2)
  t.eq(hoist.scrub(c.passwords[1].value), "***")
  local r = acr.regenerate(o { registry = REG, name = "password" })
  t.ok(r.passwords[1].value ~= c.passwords[1].value, "password changed")
  t.eq(r.passwords[2].value, c.passwords[2].value)
end)

t.case("geo-replication: Premium only (Azure's error), idempotent", function()
  need_emulator()
  t.raises(function() acr.replication_ensure(o { registry = REG, location = "northeurope" }) end, nil, "OperationNotSupportedForSku")
  local prem = "hoistprem" .. RUN
  acr.ensure(o { name = prem, location = "westeurope", sku = "Premium" })
  local rep = acr.replication_ensure(o { registry = prem, location = "northeurope" })
  t.eq(rep.location, "northeurope")
  t.eq(acr.replication_ensure(o { registry = prem, location = "northeurope" }).id, rep.id)
end)

t.case("attach gives a principal AcrPull on the registry, once", function()
  need_emulator()
  local principal = "0b1ec7aa-0a11-4d5e-9b3c-" .. ("%012x"):format(math.random(0, 0xffffffff))
  local a, created = acr.attach(o { registry = REG, principal_id = principal })
  t.eq(created, true)
  t.ok(a.properties.roleDefinitionId:find("/roleDefinitions/" .. acr.ACR_PULL, 1, true), a.properties.roleDefinitionId)
  local _, again = acr.attach(o { registry = REG, principal_id = principal })
  t.eq(again, false)
  t.raises(function() acr.attach(o { registry = REG, principal_id = "kubelet" }) end, "invalid_argument", "GUID")
end)

t.case("bad names are named", function()
  need_emulator()
  t.raises(function() acr.ensure(o { name = "a-b", location = "westeurope" }) end, "invalid_argument", "5%-50 letters and digits, got a%-b")
  t.raises(function() acr.get { name = REG } end, "invalid_argument", "resource_group")
  t.raises(function() hoist.registry.acr_refresh_token { registry = "nobody.example:5999" } end, "invalid_argument",
    "no Azure credential for nobody%.example:5999")
end)

t.case("with only an Azure credential: import, repositories, tags, copy and docker login", function()
  need_emulator()
  local push = hoist.exec { "skopeo", "copy", "--dest-tls-verify=false", "--dest-creds",
    E("HOIST_TEST_REGISTRY_TOKEN_USER") .. ":" .. E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD"),
    "docker-daemon:" .. (E("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"), "docker://" .. SOURCE }
  if push.code ~= 0 then error("cannot push the test image: " .. push.stderr) end
  local target = "hoist-acr-test/imported-" .. RUN .. ":1"
  acr.import(o { registry = REG, source = SOURCE, target = target, username = E("HOIST_TEST_REGISTRY_TOKEN_USER"),
                 password = E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD") })
  -- the data plane: no username, no password, only the Entra credential
  local login = acr.login { registry = "127.0.0.1:5002", credential = cred }
  t.eq(login.username, acr.TOKEN_USER)
  t.eq(hoist.scrub(login.password), "***")
  t.eq(acr.tags { registry = "127.0.0.1:5002", repository = "hoist-acr-test/imported-" .. RUN }, { "1" })
  local repos = table.concat(acr.repositories { registry = "127.0.0.1:5002" }, ",")
  t.ok(repos:find("hoist-acr-test/imported-" .. RUN, 1, true), "repositories list the import: " .. repos)
  local copied = hoist.registry.copy { from = "127.0.0.1:5002/" .. target, to = "127.0.0.1:5002/hoist-acr-test/copied-" .. RUN .. ":1" }
  t.match(copied.digest, "^sha256:")
  t.eq(hoist.registry.tags("127.0.0.1:5002/hoist-acr-test/copied-" .. RUN), { "1" })
  local dir = hoist.exec({ "mktemp", "-d", check = true }).stdout:match("%S+")
  local d = acr.login { registry = "127.0.0.1:5002", credential = cred, docker = true, config = dir }
  t.eq(d.login_server, "127.0.0.1:5002")
  local pulled = hoist.exec { "docker", "--config", dir, "pull", "127.0.0.1:5002/" .. target }
  hoist.exec { "rm", "-rf", dir }
  t.eq(pulled.code, 0, "docker pull with the ACR refresh token: " .. tostring(pulled.stderr))
  hoist.registry.credentials { host = "127.0.0.1:5002", acr = false }
  t.raises(function() hoist.registry.tags("127.0.0.1:5002/hoist-acr-test/copied-" .. RUN) end, "unauthorized")
end)

t.case("clean up: the test's resource group goes", function()
  if not cred then t.skip("nothing was created") end
  hoist.azure.request { method = "DELETE", path = ("/subscriptions/%s/resourcegroups/%s"):format(SUB, RG), credential = cred,
                        poll_interval = 0.3 }
end)
