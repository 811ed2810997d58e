-- hoist.azure against the Azure emulator: the generic call through the ARM RPC's three
-- long-running modes, the error envelope with request ids, nextLink pages, resource groups
-- (get, ensure, a location conflict, dry-run) and resource providers (registration, and what
-- an identity that may not register says). Credentials: the emulator's service principal.
-- Skipped loudly without the emulator's variables; failed instead when CI=true.
local t = require "hoist.test"
local azure = hoist.azure

local E = os.getenv
local CONTROL = E("HOIST_TEST_AZURE_CONTROL")
local SUB = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID")
local WHY = "the Azure emulator's variables are not set: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local RUN = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))

local cred
local function need_emulator()
  if not CONTROL or CONTROL == "" then
    if E("CI") == "true" then hoist.error { code = "unavailable", message = WHY .. " (CI=true: not skipping)" } end
    t.skip("*** Azure resources test skipped *** " .. WHY)
  end
  cred = cred or azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
                                    client_id = E("HOIST_TEST_AZURE_CLIENT_ID"), client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
end

local function control(method, what, body)
  return hoist.http.request { method = method, url = CONTROL .. "/" .. what, json = body, check = true, safe = true }.json
end

local function group(suffix) return "hoist-az-" .. RUN .. "-" .. suffix end
local function rg_path(name) return ("/subscriptions/%s/resourcegroups/%s"):format(SUB, name) end
local function req(o)
  o.credential = cred
  o.poll_interval = o.poll_interval or 0.2
  return azure.request(o)
end

t.cases("the generic call follows each long-running mode to its end", {
  { name = "async (Azure-AsyncOperation)", lro = "async", delete_status = 200 },
  { name = "location (Location)", lro = "location", delete_status = 204 },
  { name = "sync", lro = "sync", delete_status = 200 },
}, function(row)
  need_emulator()
  local name = group(row.lro)
  local put = req { method = "PUT", path = rg_path(name), body = { location = "westeurope", tags = { run = RUN } },
                    headers = { ["x-hoist-emulator-lro"] = row.lro } }
  t.eq(put.body.name, name)
  t.eq(put.body.properties.provisioningState, "Succeeded")
  if row.lro ~= "sync" then t.eq(put.operation_status, "Succeeded") end
  local del = req { method = "DELETE", path = rg_path(name), headers = { ["x-hoist-emulator-lro"] = row.lro } }
  t.ok(del.status == 200 or del.status == 204, "DELETE ended " .. tostring(del.status))
  t.eq(azure.resource_groups.get { name = name, credential = cred, subscription = SUB }, nil)
end)

t.case("an operation that fails raises Azure's error; wait = false hands back where to poll", function()
  need_emulator()
  local name = group("fail")
  local ok, e = pcall(req, { method = "PUT", path = rg_path(name), body = { location = "westeurope" },
                             headers = { ["x-hoist-emulator-lro"] = "async", ["x-hoist-emulator-provisioning"] = "Failed" } })
  t.eq(ok, false)
  t.match(e.message, "the operation ended Failed")
  t.eq(e.details.operation_status, "Failed")
  t.ok(e.details.request_ids["x-ms-request-id"], "request ids kept")
  local r = req { method = "PUT", path = rg_path(name .. "x"), body = { location = "westeurope" }, wait = false,
                  headers = { ["x-hoist-emulator-lro"] = "async" } }
  t.match(r.poll_url, "^https://127%.0%.0%.1:5010/")
  pcall(req, { method = "DELETE", path = rg_path(name .. "x") })
  pcall(req, { method = "DELETE", path = rg_path(name) })
end)

t.case("the ARM error envelope: Azure's code and message, request ids, the api-version named", function()
  need_emulator()
  local ok, e = pcall(req, { path = rg_path(group("nope")) })
  t.eq(ok, false)
  t.eq(e.code, "not_found")
  t.eq(e.details.error.code, "ResourceGroupNotFound")
  t.ok(e.details.request_ids["x-ms-correlation-request-id"], "correlation id kept")
  local ok2, e2 = pcall(req, { path = rg_path("x"), api_version = "1999-01-01" })
  t.eq(ok2, false)
  t.eq(e2.code, "invalid_argument")
  t.eq(e2.details.error.code, "InvalidApiVersionParameter")
  t.ok(select(2, pcall(req, { path = "/subscriptions/" .. SUB .. "/providers/Contoso.Widgets/widgets/w" })).message:find(
    "no api-version is pinned for resource type 'Contoso.Widgets/widgets'", 1, true))
end)

-- App Service refuses a change during a swap in its own words and envelope, read as ARM's:
-- {code = "Conflict", message = "Cannot modify this site because another operation ..."}.
local BUSY_SITE = "Cannot modify this site because another operation is in progress. Details: Id: 31d0ccd7, "
  .. "OperationName: SwapSiteSlots, SiteName: web, SlotName: staging"
local function conflict(code, message)
  return select(2, pcall(hoist.error, { code = "conflict", message = "PUT web: " .. message,
                                        details = { error = { code = code, message = message } } }))
end

t.cases("another_operation: the 409s that mean an operation still runs on the resource", {
  { name = "ARM's AnotherOperationInProgress", err = conflict("AnotherOperationInProgress", "Another operation ..."), yes = true },
  { name = "App Service's Conflict during a swap", err = conflict("Conflict", BUSY_SITE), yes = true },
  { name = "another Conflict", err = conflict("Conflict", "The slot cannot be swapped with itself."), yes = false },
  { name = "not a conflict", err = select(2, pcall(hoist.error, { code = "not_found", message = "gone" })), yes = false },
}, function(row) t.eq(azure.another_operation(row.err), row.yes) end)

t.case("when_settled runs the change again while Azure answers that an operation runs, then goes on", function()
  local tries = 0
  local got = azure.when_settled({ what = "web app web", poll_interval = 0.01, get = function() return { properties = {} } end },
    function()
      tries = tries + 1
      if tries < 3 then error(conflict("Conflict", BUSY_SITE), 0) end
      return "changed"
    end)
  t.eq({ got, tries }, { "changed", 3 })
  local e = t.raises(function()
    azure.when_settled({ what = "web app web", poll_interval = 0.01, get = function() return nil end },
      function() error(conflict("Conflict", "The slot cannot be swapped with itself."), 0) end)
  end, "conflict")
  t.match(e.message, "swapped with itself")
end)

t.case("hoist.azure.list follows nextLink pages", function()
  need_emulator()
  local before = control("GET", "settings")
  control("POST", "settings", { page_size = 2 })
  -- named to sort before every other group: pages are offsets into the sorted list, and files
  -- run beside this one (hoist test -j) add and delete groups meanwhile; a change before these
  -- would move them across a page boundary
  local function page_group(i) return "0" .. group("page" .. i) end
  local ok, err = pcall(function()
    for i = 1, 3 do req { method = "PUT", path = rg_path(page_group(i)), body = { location = "westeurope" } } end
    local groups = azure.list { path = "/subscriptions/" .. SUB .. "/resourcegroups", credential = cred }
    local mine = 0
    for _, g in ipairs(groups) do if g.name:find(RUN .. "-page", 1, true) then mine = mine + 1 end end
    t.eq(mine, 3)
    t.ok(#groups >= 3)
  end)
  control("POST", "settings", { page_size = before.page_size })
  for i = 1, 3 do pcall(req, { method = "DELETE", path = rg_path(page_group(i)) }) end
  if not ok then error(err, 0) end
end)

t.case("resource_groups.ensure creates once, returns the existing group, refuses another location", function()
  need_emulator()
  local name = group("ensure")
  local o = { name = name, location = "westeurope", credential = cred, subscription = SUB, tags = { run = RUN } }
  local g, created = azure.resource_groups.ensure(o)
  t.eq(created, true)
  t.eq(g.name, name)
  local again, created2 = azure.resource_groups.ensure(o)
  t.eq(created2, false)
  t.eq(again.id, g.id)
  t.eq(azure.resource_groups.get { name = name, credential = cred, subscription = SUB }.location, "westeurope")
  local ok, e = pcall(azure.resource_groups.ensure, { name = name, location = "eastus", credential = cred, subscription = SUB })
  t.eq(ok, false)
  t.eq(e.code, "conflict")
  t.match(e.message, "exists in westeurope, not eastus")
  pcall(req, { method = "DELETE", path = rg_path(name) })
end)

t.case("resource_groups.ensure under dry-run: a plan step, nothing created", function()
  need_emulator()
  local name = group("dry")
  local g, created = azure.resource_groups.ensure { name = name, location = "westeurope", credential = cred, subscription = SUB,
                                                    dry_run = true }
  t.eq(g.planned, true)
  t.eq(created, true)
  t.eq(azure.resource_groups.get { name = name, credential = cred, subscription = SUB }, nil)
end)

t.case("providers.ensure registers a provider and waits until it is Registered", function()
  need_emulator()
  local ns = "Microsoft.ContainerInstance"
  local p = azure.providers.ensure { namespace = ns, credential = cred, subscription = SUB, poll_interval = 0.2, wait_timeout = 30 }
  t.eq(p.registrationState, "Registered")
  t.eq(azure.providers.get { namespace = ns, credential = cred, subscription = SUB }.registrationState, "Registered")
  -- and again: nothing to do
  t.eq(azure.providers.ensure { namespace = ns, credential = cred, subscription = SUB }.registrationState, "Registered")
end)

t.case("providers.ensure names the provider and the command when registration is refused", function()
  need_emulator()
  -- a provider no other test file uses: Microsoft.App's Container Apps may be deployed beside
  -- this file (hoist test -j), and it cannot be unregistered while they exist
  local ns = "Microsoft.ManagedIdentity"
  req { method = "POST", path = "/subscriptions/" .. SUB .. "/providers/" .. ns .. "/unregister" }
  control("POST", "faults", { server = "arm", status = 403, count = 1, method = "POST", match = ns .. "/register",
                              code = "AuthorizationFailed" })
  local ok, e = pcall(azure.providers.ensure, { namespace = ns, credential = cred, subscription = SUB, poll_interval = 0.2 })
  t.eq(ok, false)
  t.eq(e.code, "forbidden")
  t.match(e.message, "resource provider Microsoft%.ManagedIdentity is not registered in subscription " .. SUB:gsub("%-", "%%-"))
  t.match(e.message, "`az provider register %-%-namespace Microsoft%.ManagedIdentity`")
  -- registered again, as the emulator starts
  t.eq(azure.providers.ensure { namespace = ns, credential = cred, subscription = SUB, poll_interval = 0.2 }.registrationState,
       "Registered")
end)

t.case("resource ids encode every name; missing_ok reads a resource that is not there as nil", function()
  -- names with characters a path gives meaning to stay one segment (they did not before:
  -- the modules put names into paths as they came)
  t.eq(azure.resource_id("s", "rg (1)"), "/subscriptions/s/resourceGroups/rg%20%281%29")
  t.eq(azure.resource_id("s", "g", "Microsoft.Web/sites", "a/../b", "slots", "st ag"),
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/sites/a%2F..%2Fb/slots/st%20ag")
  need_emulator()
  local c = cred
  t.eq(azure.request { path = rg_path("hoist-no-such-group-" .. os.time()), credential = c, missing_ok = true }, nil)
  t.eq(azure.aci.get { name = "web", resource_group = "hoist-no-such/../group", subscription = SUB, credential = c }, nil)
  local ok, e = pcall(azure.request, { path = rg_path("hoist-no-such-group-" .. os.time()), credential = c })
  t.eq(ok, false)
  t.eq(e.code, "not_found")
end)

t.cases("option errors name the function and the option", {
  { fn = function() return azure.request { path = 3 } end, pat = "hoist.azure.request: option 'path' must be a string" },
  { fn = function() return azure.request { method = "FETCH", path = "/x" } end, pat = "option 'method' must be one of" },
  { fn = function() return azure.request { path = "/x", bogus = 1 } end, pat = "unknown option 'bogus'" },
  { fn = function() return azure.request { path = "/x", credential = {} } end, pat = "option 'credential' must be a source name or come from hoist.azure.credential" },
  { fn = function() return azure.credential { source = "password" } end, pat = "option 'source' must be one of" },
  { fn = function() return azure.resource_groups.ensure { name = "x", subscription = "s", credential = cred } end,
    pat = "option 'location' is required" },
  { fn = function() return azure.providers.get { namespace = "ContainerInstance", subscription = "s", credential = cred } end,
    pat = "'ContainerInstance' is not a resource provider namespace" },
}, function(row)
  cred = cred or azure.credential { source = "static", token = "option-test-token" }
  local ok, e = pcall(row.fn)
  t.eq(ok, false)
  t.eq(e.code, "invalid_argument")
  t.ok(e.message:find(row.pat, 1, true), e.message)
end)
