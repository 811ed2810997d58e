-- hoist.azure.identity against the Azure emulator (Microsoft.ManagedIdentity, role definitions
-- and assignments; a managed identity's pull checked as ACR checks it): an identity ensured,
-- a federated credential for the GitHub OIDC token that then signs in as the identity, role
-- assignments ensured once, the missing roles named, dry runs, errors; and the Azure targets'
-- preflight refusing a registry_identity without AcrPull in a second, before any build; the
-- caller's own permissions (identity.granted, missing_actions) and a Reader-only deployer
-- (the emulator's limited principal) refused by container@1 before any build.
-- Skipped without the emulator (fails when CI=true).
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local identity = require "hoist.azure.identity"

local E = os.getenv
local SUB = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID")
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local RUN = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local RG = "hoist-id-" .. RUN

local S = {}
local function need_emulator()
  if not E("HOIST_TEST_AZURE_CONTROL") then
    local why = "the Azure emulator is not up: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"
    if E("CI") == "true" then error(why) end
    t.skip("*** azure identity test skipped *** " .. why)
  end
  if S.cred then return end
  S.cred = hoist.azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
    client_id = E("HOIST_TEST_AZURE_CLIENT_ID"), client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
  hoist.azure.resource_groups.ensure { name = RG, location = "westeurope", credential = S.cred, subscription = SUB }
end

local function o(extra)
  local out = { subscription = SUB, credential = S.cred }
  for k, v in pairs(extra or {}) do out[k] = v end
  return out
end

-- The issuer and subject of the GitHub OIDC token the emulator hands out.
local function github_claims()
  local r = hoist.http.request { url = E("HOIST_TEST_AZURE_OIDC_URL") .. "?audience=api://AzureADTokenExchange",
    headers = { Authorization = "Bearer " .. E("HOIST_TEST_AZURE_OIDC_TOKEN") }, check = true }
  local payload = r.json.value:match("^[^.]+%.([^.]+)%.")
  local std = payload:gsub("-", "+"):gsub("_", "/")
  std = std .. ("="):rep((4 - #std % 4) % 4)
  return hoist.json.decode(require("hoist.native.core").base64_decode(std))
end

t.case("an identity and its GitHub federated credential: the OIDC token then signs in as the identity", function()
  need_emulator()
  local id = identity.ensure(o { resource_group = RG, name = "deployer-" .. RUN })
  t.eq(id.changed, true)
  t.match(id.principal_id, "^%x+%-")
  t.match(id.client_id, "^%x+%-")
  local again = identity.ensure(o { resource_group = RG, name = "deployer-" .. RUN })
  t.eq({ again.changed, again.principal_id }, { false, id.principal_id })
  local claims = github_claims()
  local f = identity.federated(o { resource_group = RG, identity = "deployer-" .. RUN, name = "github-main", issuer = claims.iss,
                                  subject = claims.sub })
  t.eq(f.changed, true)
  t.eq(identity.federated(o { resource_group = RG, identity = "deployer-" .. RUN, name = "github-main", issuer = claims.iss,
                              subject = claims.sub }).changed, false, "ensured once")
  -- the workflow's login, as the identity: GitHub's token, no secret
  local env = { AZURE_CLIENT_ID = id.client_id, AZURE_TENANT_ID = E("HOIST_TEST_AZURE_TENANT_ID"),
                ACTIONS_ID_TOKEN_REQUEST_URL = E("HOIST_TEST_AZURE_OIDC_URL"),
                ACTIONS_ID_TOKEN_REQUEST_TOKEN = E("HOIST_TEST_AZURE_OIDC_TOKEN"), AZURE_CLIENT_SECRET = "",
                AZURE_CREDENTIALS = "", AZURE_SUBSCRIPTION_ID = SUB }
  local script = support.tmpdir("hoist-id") .. "/login.lua"
  support.write(script, 'local c = hoist.azure.credential { source = "oidc" }\n'
    .. 'print("TOKEN " .. #c:get_token("https://management.azure.com/.default").token)\n')
  local r = support.run_hoist({ "run", script }, { env = env, timeout = 60 })
  t.eq(r.code, 0, r.stderr)
  t.match(r.stdout, "TOKEN %d+")
  -- a changed subject is corrected; the old one no longer signs in
  t.eq(identity.federated(o { resource_group = RG, identity = "deployer-" .. RUN, name = "github-main", issuer = claims.iss,
                              subject = identity.github_subject { repo = "someone/else", branch = "main" } }).changed, true)
  r = support.run_hoist({ "run", script }, { env = env, timeout = 60 })
  t.ok(r.code ~= 0, "refused once the subject changed")
  t.match(r.stderr, "No matching federated identity record")
end)

t.case("role assignments are ensured once; missing names the exact role and scope", function()
  need_emulator()
  local id = identity.ensure(o { resource_group = RG, name = "puller-" .. RUN })
  local rg_scope = hoist.azure.resource_id(SUB, RG)
  local registry = hoist.azure.acr.ensure(o { resource_group = RG, name = "reg" .. RUN, location = "westeurope" }).id
  local need = { { role = "AcrPull", scope = registry, why = "the app pulls" }, { role = "Contributor", scope = rg_scope } }
  t.eq(#identity.missing(o { principal_id = id.principal_id, need = need }), 2)
  local a = identity.assign(o { principal_id = id.principal_id, role = "AcrPull", scope = rg_scope })
  t.eq(a.changed, true)
  t.eq(identity.assign(o { principal_id = id.principal_id, role = "AcrPull", scope = rg_scope }).changed, false)
  -- AcrPull on the group covers the registry in it; Contributor is still missing
  t.eq(identity.missing(o { principal_id = id.principal_id, need = need }), { { role = "Contributor", scope = rg_scope } })
  identity.assign(o { principal_id = id.principal_id, role = "Owner", scope = rg_scope })
  t.eq(identity.missing(o { principal_id = id.principal_id, need = need }), {}, "Owner covers Contributor")
  t.eq(identity.role_id(o { role = "AcrPush" }):match("[%x%-]+$"), "8311e382-0749-4cb8-b61a-304f252e45ec")
end)

t.cases("errors name the bad thing", {
  { name = "unknown role", fn = function() identity.role_id(o { role = "AcrPuller" }) end, code = "not_found",
    pat = 'no role named "AcrPuller"' },
  { name = "principal not a GUID", fn = function() identity.assign(o { principal_id = "kubelet", role = "AcrPull",
    scope = "/subscriptions/" .. SUB }) end, code = "invalid_argument", pat = "option 'principal_id' must be an object id" },
  { name = "http issuer", fn = function() identity.federated(o { resource_group = RG, identity = "x", name = "gh1", subject = "s",
    issuer = "http://token.actions.githubusercontent.com" }) end, code = "invalid_argument", pat = "must be an https URL" },
  { name = "bad identity name", fn = function() identity.ensure(o { resource_group = RG, name = "a b" }) end, code = "invalid_argument",
    pat = "option 'name' must be 3%-128 letters" },
  { name = "subject needs one kind", fn = function() identity.github_subject { repo = "a/b", branch = "x", tag = "y" } end,
    code = "invalid_argument", pat = "exactly one of" },
}, function(row)
  need_emulator()
  t.raises(row.fn, row.code, row.pat)
end)

t.case("github_subject makes GitHub's subjects", function()
  t.eq(identity.github_subject { repo = "acme/web", branch = "main" }, "repo:acme/web:ref:refs/heads/main")
  t.eq(identity.github_subject { repo = "acme/web", environment = "prod" }, "repo:acme/web:environment:prod")
  t.eq(identity.github_subject { repo = "acme/web", pull_request = true }, "repo:acme/web:pull_request")
  t.eq(identity.github_subject { repo = "acme/web", tag = "v1" }, "repo:acme/web:ref:refs/tags/v1")
end)

t.case("a dry run plans the identity and the assignment, and creates nothing", function()
  need_emulator()
  local core = require "hoist.native.core"
  local previous = core.set_dry_run(true)
  local ok, err = pcall(function()
    local id = identity.ensure(o { resource_group = RG, name = "planned-" .. RUN })
    t.eq({ id.changed, id.planned }, { true, true })
    local a = identity.assign(o { principal_id = "0b1ec7aa-0a11-4d5e-9b3c-00000000d1d1", role = "AcrPull",
                                  scope = hoist.azure.resource_id(SUB, RG) })
    t.eq({ a.changed, a.planned }, { true, true })
  end)
  core.set_dry_run(previous)
  if not ok then error(err, 0) end
  t.eq(hoist.azure.request { method = "GET", credential = S.cred, missing_ok = true,
    path = hoist.azure.resource_id(SUB, RG, "Microsoft.ManagedIdentity/userAssignedIdentities", "planned-" .. RUN) }, nil)
end)

-- Issue 15 §4 / issue 13: the roles the deploy needs, checked before the build: a
-- registry_identity without AcrPull fails container@1 in a second with exit 2, naming the
-- identity, its principal and the assignment to make; with the role it passes the preflight.
t.case("container@1 on aci: a registry_identity without AcrPull is refused before the build, naming the assignment", function()
  need_emulator()
  local id = identity.ensure(o { resource_group = RG, name = "acipull-" .. RUN })
  local proxy = E("HOIST_TEST_AZURE_PROXY")
  local env = { AZURE_CREDENTIALS = E("HOIST_TEST_AZURE_CREDENTIALS"), HTTPS_PROXY = proxy, HTTP_PROXY = proxy,
                NO_PROXY = "127.0.0.1,localhost" }
  local function run()
    return support.run_hoist({ "run", "container@1", "--dry-run", "--no-color", "--state-dir", support.tmpdir("hoist-id-state"),
      "--set", "target=aci", "--set", "resource_group=" .. RG, "--set", "image=127.0.0.1:5002/hoist-id/app",
      "--set", "context=" .. support.root .. "/examples/app", "--set", "scan=off", "--set", "registry_identity=" .. id.id },
      { env = env, timeout = 120 })
  end
  local r = run()
  t.eq(r.code, 2, r.stdout .. r.stderr)
  t.match(r.stderr, "registry_identity .*acipull%-" .. RUN .. " %(principal " .. id.principal_id:gsub("%-", "%%-")
    .. "%) has no AcrPull role on a registry")
  t.match(r.stderr, "role AcrPull")
  t.no_match(r.stdout .. r.stderr, "docker build", "nothing was built")
  identity.assign(o { principal_id = id.principal_id, role = "AcrPull", scope = hoist.azure.resource_id(SUB, RG) })
  r = run()
  t.eq(r.code, 0, r.stdout .. r.stderr)
end)

t.case("granted evaluates actions and notActions as Azure does", function()
  local contributor = { actions = { "*" }, notActions = { "Microsoft.Authorization/*/Write" } }
  local uaa = { actions = { "*/read", "Microsoft.Authorization/*" } }
  t.eq(identity.granted({ contributor }, "microsoft.web/sites/WRITE"), true, "no case")
  t.eq(identity.granted({ contributor }, "Microsoft.Authorization/roleAssignments/write"), false)
  t.eq(identity.granted({ contributor, uaa }, "Microsoft.Authorization/roleAssignments/write"), true,
    "a notAction takes away from its own role only")
  t.eq(identity.granted({ { actions = { "*/read" } } }, "Microsoft.Web/sites/read"), true)
  t.eq(identity.granted({ { actions = { "*/read" } } }, "Microsoft.Web/sites/write"), false)
  t.eq(identity.granted({ { actions = { "Microsoft.Web/*" } } }, "Microsoft.Web/sites/slots/slotsswap/action"), true)
  t.eq(identity.granted({ { actions = { "Microsoft.Web/sites/*" } } }, "Microsoft.Web/serverfarms/write"), false)
  t.eq(identity.granted({ { actions = { "Microsoft.Web.Extra/*" } } }, "MicrosoftXWeb.Extra/sites/write"), false,
    "a dot is a dot")
  t.eq(identity.granted({}, "Microsoft.Web/sites/read"), false)
end)

-- Issue 13: the deployer's OWN permissions, checked before the build. The emulator's limited
-- service principal holds no role until the test gives it one; Azure's Permissions - List
-- (the caller's effective actions) tells what it lacks, as ARM would refuse it later.
local LIMITED_ID, LIMITED_SECRET, LIMITED_OID = E("HOIST_TEST_AZURE_LIMITED_CLIENT_ID"),
  E("HOIST_TEST_AZURE_LIMITED_CLIENT_SECRET"), E("HOIST_TEST_AZURE_LIMITED_OBJECT_ID")
local function need_limited()
  need_emulator()
  if not LIMITED_ID then
    local why = "the Azure emulator has no limited principal (HOIST_TEST_AZURE_LIMITED_CLIENT_ID): restart it with tests/env/up.sh"
    if E("CI") == "true" then error(why) end
    t.skip("*** azure permissions test skipped *** " .. why)
  end
end
local PRG = "hoist-azperms-" .. RUN
local limited_assignments = {}
local function give_limited(role, scope)
  local a = identity.assign(o { principal_id = LIMITED_OID, role = role, scope = scope })
  limited_assignments[#limited_assignments + 1] = a.id
end

t.case("missing_actions: no role, Reader, Contributor at a group, as Azure lists the caller's permissions", function()
  need_limited()
  hoist.azure.resource_groups.ensure { name = PRG, location = "westeurope", credential = S.cred, subscription = SUB }
  local scope = hoist.azure.resource_id(SUB, PRG)
  local lim = hoist.azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
    client_id = LIMITED_ID, client_secret = LIMITED_SECRET }
  t.eq(lim:principal().object_id, LIMITED_OID, "the token names the principal")
  t.eq(lim:principal().client_id, LIMITED_ID)
  local want = { "Microsoft.ContainerInstance/containerGroups/read", "Microsoft.ContainerInstance/containerGroups/write",
                 "Microsoft.Authorization/roleAssignments/write" }
  local function missing() return identity.missing_actions { scope = scope, actions = want, credential = lim } end
  t.eq(missing(), { missing = want, no_role = true, scope = scope })
  give_limited("Reader", scope)
  t.eq(missing(), { missing = { want[2], want[3] }, no_role = false, scope = scope })
  give_limited("Contributor", scope)
  t.eq(missing().missing, { want[3] }, "Contributor manages no access")
  t.eq(identity.missing_actions { scope = "/subscriptions/" .. SUB, actions = want, credential = S.cred }.missing, {},
    "the default principal owns it")
  t.raises(function() identity.missing_actions { scope = scope, actions = { "write" } } end, "invalid_argument",
    "actions%[1%] must be an action like")
end)

t.case("container@1 on aci: a deployer with Reader only is refused before the build, naming each missing action and a role", function()
  need_limited()
  support.need_docker("the azure permissions test (checks nothing was built)")
  local scope = hoist.azure.resource_id(SUB, PRG)
  -- the default principal registers the provider, as an owner does once per subscription
  hoist.azure.providers.ensure { namespace = "Microsoft.ContainerInstance", subscription = SUB, credential = S.cred,
                                 poll_interval = 0.2 }
  for _, id in ipairs(limited_assignments) do
    hoist.azure.request { method = "DELETE", credential = S.cred, path = id, missing_ok = true }
  end
  give_limited("Reader", scope)
  local creds = hoist.json.decode(E("HOIST_TEST_AZURE_CREDENTIALS"))
  creds.clientId, creds.clientSecret = LIMITED_ID, LIMITED_SECRET
  local proxy = E("HOIST_TEST_AZURE_PROXY")
  local env = { AZURE_CREDENTIALS = hoist.json.encode(creds), HTTPS_PROXY = proxy, HTTP_PROXY = proxy,
                NO_PROXY = "127.0.0.1,localhost" }
  local repo = "127.0.0.1:5002/hoist-azperms/app"
  local function run(dry)
    local args = { "run", "container@1", "--no-color", "--state-dir", support.tmpdir("hoist-azperms-state"),
      "--set", "target=aci", "--set", "resource_group=" .. PRG, "--set", "name=hoist-azperms-" .. RUN, "--set", "image=" .. repo, "--set", "tag=" .. RUN,
      "--set", "context=" .. support.root .. "/examples/app", "--set", "scan=off" }
    if dry then table.insert(args, 2, "--dry-run") end
    return support.run_hoist(args, { env = env, timeout = 120 })
  end
  local r = run(false)
  t.eq(r.code, 2, r.stdout .. r.stderr)
  local out = r.stdout .. r.stderr
  t.match(out, "deploying principal %(client id " .. LIMITED_ID:gsub("%-", "%%-") .. ", object id "
    .. LIMITED_OID:gsub("%-", "%%-") .. "%) may not perform at " .. scope:gsub("%-", "%%-"))
  t.match(out, "Microsoft%.ContainerInstance/containerGroups/write")
  t.match(out, "Microsoft%.ContainerInstance/containerGroups/delete")
  t.match(out, "Microsoft%.Resources/subscriptions/resourceGroups/write")
  t.no_match(out, "containerGroups/read", "Reader grants the reads")
  t.match(out, "e%.g%. Contributor: az role assignment create")
  t.no_match(out, "docker build", "nothing was built")
  t.ok(hoist.exec({ "docker", "image", "inspect", repo .. ":" .. RUN }).code ~= 0, "no image " .. repo .. ":" .. RUN)
  -- the same principal with Contributor passes the preflight (a dry run: the plan follows it)
  give_limited("Contributor", scope)
  r = run(true)
  t.eq(r.code, 0, r.stdout .. r.stderr)
end)

t.case("clean up", function()
  for _, id in ipairs(limited_assignments) do
    pcall(hoist.azure.request, { method = "DELETE", credential = S.cred, path = id, missing_ok = true })
  end
  if S.cred then
    pcall(hoist.azure.request, { method = "DELETE", credential = S.cred, path = hoist.azure.resource_id(SUB, PRG) })
  end
  if S.cred then
    pcall(hoist.azure.request, { method = "DELETE", credential = S.cred, path = hoist.azure.resource_id(SUB, RG) })
  end
end)
