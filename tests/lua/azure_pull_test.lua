-- hoist.azure.pull: which registry credentials an Azure service may keep for its later pulls
-- (table of cases, no emulator), and the default pull credential of a registry with an Azure
-- credential (against the emulator's token registry): the service principal's own secret, else
-- refused; never an ACR refresh token.
local t = require "hoist.test"
local pull = require "hoist.azure.pull"

local E = os.getenv

-- a JWT whose payload is {"exp": 1796650000}: the header and signature do not matter here
local JWT = "eyJhbGciOiJSUzI1NiJ9." .. "eyJleHAiOjE3OTY2NTAwMDB9" .. ".c2ln"

t.cases("pull secrets that expire are named; those made for pulling pass", {
  { name = "an ACR refresh token", user = "00000000-0000-0000-0000-000000000000", password = "eyJx.y.z",
    want = "ACR refresh token %(user 00000000%-0000%-0000%-0000%-000000000000%), valid about 3 hours" },
  { name = "GITHUB_TOKEN", user = "x-access-token", password = "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
    want = "GITHUB_TOKEN %(ghs_%.%.%.%), valid only while the job runs" },
  { name = "a user-to-server token", user = "me", password = "ghu_abcdef", want = "valid 8 hours" },
  { name = "a JWT with an expiry", user = "me", password = JWT, want = "expires at 2026%-12%-07T" },
  { name = "an ACR token's password", user = "pull-token", password = "Zx9PqV2m+Lr4aBcDeFgHiJkLmNoPqRsT" },
  { name = "a PAT with read:packages", user = "me", password = "ghp_abcdefghijklmnop" },
  { name = "a service principal's secret", user = "c11e0001-0a11-4d5e-9b3c-000000000001", password = "a~b.c_d-e" },
}, function(c)
  local why = pull.expiring(c.user, c.password)
  if c.want then t.match(why or "(nil)", c.want) else t.eq(why, nil) end
end)

t.case("refused with the reason and what to give instead, exit 2", function()
  local e = t.raises(function()
    pull.check("targets.aci", { registry_username = "x-access-token", registry_password = "ghs_abc" })
  end, "invalid_argument", "targets%.aci: registry_username/registry_password would be stored as the pull secret, but "
    .. "it is a GitHub Actions GITHUB_TOKEN")
  t.match(e.message, "pull%-only scope map")
  t.match(e.message, "AcrPull")
  t.eq(e.details.exit_code, 2)
end)

t.case("the default pull credential: the service principal's own, else refused; never a refresh token", function()
  if not E("HOIST_TEST_AZURE_CONTROL") or E("HOIST_TEST_AZURE_CONTROL") == "" then
    if E("CI") == "true" then hoist.error { code = "unavailable", message = "the Azure emulator's variables are not set" } end
    t.skip("*** needs the Azure emulator's token registry *** run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`")
  end
  local server = E("HOIST_TEST_REGISTRY_TOKEN")
  local image = server .. "/hoist-azfix-pull/web@sha256:" .. ("0"):rep(64)
  local sp = hoist.azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
    client_id = E("HOIST_TEST_AZURE_CLIENT_ID"), client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
  -- no Azure credential for the registry: a public image, no pull credential
  hoist.registry.credentials { host = server, acr = false }
  t.eq(pull.default("targets.aci", image, sp), nil)
  hoist.registry.credentials { host = server, acr = sp }
  local got = pull.default("targets.aci", image, sp)
  t.eq(got, { server = server, username = E("HOIST_TEST_AZURE_CLIENT_ID"), password = E("HOIST_TEST_AZURE_CLIENT_SECRET") })
  t.eq(hoist.scrub(got.password), "***", "the secret is a registered secret")
  t.eq(pull.expiring(got.username, got.password), nil)
  -- a source that gives only tokens: refused, naming the alternatives
  local mi = hoist.azure.credential { source = "static", token = JWT }
  t.eq(mi:service_principal(), nil)
  local e = t.raises(function() pull.default("targets.aci", image, mi) end, "invalid_argument",
    "no pull credential for " .. server:gsub("%p", "%%%0") .. " that outlives the deploy: the Azure credential %(static%)")
  t.match(e.message, "registry_identity")
  hoist.registry.credentials { host = server, acr = false }
end)

t.cases("every Azure target's preflight refuses a pull secret that expires, before the build", {
  { name = "aci" }, { name = "appservice" }, { name = "containerapp" },
}, function(c)
  local target = require("hoist.targets").get(c.name)
  local e = t.raises(function()
    target.preflight { service = "web", image = "ghcr.io/o/web:1", resource_group = "hoist-azfix-g",
                       registry_username = "x-access-token", registry_password = "ghs_0123456789abcdef" }
  end, "invalid_argument", "targets%." .. c.name .. ": registry_username/registry_password would be stored as the pull "
    .. "secret, but it is a GitHub Actions GITHUB_TOKEN")
  t.eq(e.details.exit_code, 2)
  t.eq(hoist.scrub("ghs_0123456789abcdef"), "***", "the token is a registered secret")
end)
