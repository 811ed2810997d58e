-- Every credential source obtains a token from the Azure emulator (tests/emulators/azure) and
-- makes a Resource Manager call with it, in a child `hoist run` given only that source's
-- variables; an OIDC-federated run outlives its first assertion and its first token; the
-- child logs its secrets on purpose and stdout, stderr and events.jsonl are scanned for them.
-- Skipped loudly without the emulator's variables (source /tmp/hoist-env/env.sh); failed
-- instead when CI=true.
local t = require "hoist.test"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")

local E = os.getenv
local CONTROL = E("HOIST_TEST_AZURE_CONTROL")
local TENANT, SUB = E("HOIST_TEST_AZURE_TENANT_ID"), E("HOIST_TEST_AZURE_SUBSCRIPTION_ID")
local WHY = "the Azure emulator's variables are not set: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"

local function need_emulator()
  if CONTROL and CONTROL ~= "" then return end
  if E("CI") == "true" then hoist.error { code = "unavailable", message = WHY .. " (CI=true: not skipping)" } end
  t.skip("*** Azure credential test skipped *** " .. WHY)
end

local function control(method, what, body)
  local r = hoist.http.request { method = method, url = CONTROL .. "/" .. what, json = body, check = true, safe = true }
  return r.json
end

-- The child: a token, an ARM call with it, its secrets logged on purpose, and the raw token
-- written to a file (not an output) for the scan.
local CHILD = [[
local c = hoist.azure.credential { source = os.getenv("T_SOURCE") ~= "" and os.getenv("T_SOURCE") or nil, az = os.getenv("T_AZ") }
local seen = {}
local function call()
  local tok = c:get_token()
  seen[#seen + 1] = tok.token
  hoist.log.info("the token is " .. tok.token, { token = tok.token })
  print("token: " .. tok.token)
  if os.getenv("T_ARM") == "1" then
    local r = hoist.azure.request { path = "/subscriptions/" .. os.getenv("T_SUB") .. "/resourcegroups", credential = c }
    return r.status
  end
  return 0
end
local status = call()
local wait = tonumber(os.getenv("T_WAIT") or "0")
if wait > 0 then hoist.sleep(wait); status = call() end
local f = assert(io.open(os.getenv("T_OUT"), "w"))
f:write(hoist.json.encode { source = c.source, status = status, tokens = seen })
f:close()
]]

local BASE_ENV = { AZURE_CLIENT_ID = "", AZURE_TENANT_ID = "", AZURE_CLIENT_SECRET = "", AZURE_CREDENTIALS = "",
                   AZURE_FEDERATED_TOKEN_FILE = "", ACTIONS_ID_TOKEN_REQUEST_URL = "", ACTIONS_ID_TOKEN_REQUEST_TOKEN = "",
                   SYSTEM_OIDCREQUESTURI = "", SYSTEM_ACCESSTOKEN = "", AZURESUBSCRIPTION_SERVICE_CONNECTION_ID = "",
                   IDENTITY_ENDPOINT = "", IDENTITY_HEADER = "", AZURE_POD_IDENTITY_AUTHORITY_HOST = "", AZURE_SUBSCRIPTION_ID = "" }

-- Runs the child with `env` on top of BASE_ENV; returns its JSON and everything it output.
local function run_child(env, secrets)
  local dir = support.tmpdir("hoist-azcred")
  support.write(dir .. "/child.lua", CHILD)
  local e = { T_OUT = dir .. "/out.json", T_SUB = SUB, T_ARM = "1", T_SOURCE = "", T_AZ = "az" }
  for k, v in pairs(BASE_ENV) do e[k] = v end
  for k, v in pairs(env) do e[k] = v end
  local r = support.run_hoist({ "run", dir .. "/child.lua", "--state-dir", dir .. "/state" }, { env = e, timeout = 120 })
  t.eq(r.code, 0, "child failed: " .. r.stderr)
  local out = hoist.json.decode(support.must_read(dir .. "/out.json"))
  local events = hoist.exec { "sh", "-c", "cat \"$1\"/runs/*/events.jsonl", "sh", dir .. "/state" }.stdout
  t.ok(#events > 0, "events.jsonl written")
  local scan = { stdout = r.stdout, stderr = r.stderr, ["events.jsonl"] = events }
  local all = {}
  for _, s in ipairs(secrets or {}) do all[#all + 1] = s end
  for _, s in ipairs(out.tokens) do all[#all + 1] = s end
  for where, text in pairs(scan) do
    for _, s in ipairs(all) do
      t.ok(not text:find(s, 1, true), ("a secret (%s...) appears in %s"):format(s:sub(1, 6), where))
    end
  end
  t.match(r.stdout, "token: %*%*%*")  -- printed, and masked
  return out
end

local function workload_file(lifetime)
  local dir = support.tmpdir("hoist-azwi")
  local file = dir .. "/token"
  control("POST", "workload-token", { sub = E("HOIST_TEST_AZURE_WORKLOAD_SUBJECT"), aud = "api://AzureADTokenExchange",
                                      lifetime = lifetime or 600, file = file })
  return file, support.must_read(file)
end

t.cases("each source obtains a token the emulator's Resource Manager accepts", {
  { name = "client_secret", env = function()
      return { AZURE_CLIENT_ID = E("HOIST_TEST_AZURE_CLIENT_ID"), AZURE_TENANT_ID = TENANT,
               AZURE_CLIENT_SECRET = E("HOIST_TEST_AZURE_CLIENT_SECRET") }, { E("HOIST_TEST_AZURE_CLIENT_SECRET") }
    end },
  { name = "AZURE_CREDENTIALS (the chain)", source = "client_secret", chain = true, env = function()
      return { AZURE_CREDENTIALS = E("HOIST_TEST_AZURE_CREDENTIALS") }, { E("HOIST_TEST_AZURE_CLIENT_SECRET") }
    end },
  { name = "workload_identity", env = function()
      local file, assertion = workload_file()
      return { AZURE_FEDERATED_TOKEN_FILE = file, AZURE_CLIENT_ID = E("HOIST_TEST_AZURE_FEDERATED_CLIENT_ID"),
               AZURE_TENANT_ID = TENANT }, { assertion }
    end },
  { name = "oidc", env = function()
      return { ACTIONS_ID_TOKEN_REQUEST_URL = E("HOIST_TEST_AZURE_OIDC_URL"),
               ACTIONS_ID_TOKEN_REQUEST_TOKEN = E("HOIST_TEST_AZURE_OIDC_TOKEN"),
               AZURE_CLIENT_ID = E("HOIST_TEST_AZURE_FEDERATED_CLIENT_ID"), AZURE_TENANT_ID = TENANT },
             { E("HOIST_TEST_AZURE_OIDC_TOKEN") }
    end },
  { name = "managed_identity (App Service)", source = "managed_identity", env = function()
      return { IDENTITY_ENDPOINT = E("HOIST_TEST_AZURE_MSI_ENDPOINT"), IDENTITY_HEADER = E("HOIST_TEST_AZURE_MSI_HEADER") },
             { E("HOIST_TEST_AZURE_MSI_HEADER") }
    end },
  { name = "managed_identity (IMDS)", source = "managed_identity", env = function()
      return { AZURE_POD_IDENTITY_AUTHORITY_HOST = E("HOIST_TEST_AZURE_IMDS_HOST") }, {}
    end },
}, function(row)
  need_emulator()
  local env, secrets = row.env()
  if not row.chain then env.T_SOURCE = row.source or row.name end
  local out = run_child(env, secrets)
  t.eq(out.source, row.source or row.name)
  t.eq(out.status, 200)
end)

-- No emulator needed: the chain stops at the broken variable, before any request.
t.cases("a set but broken AZURE_CREDENTIALS is an error naming it, not a fall-through to az", {
  { name = "not JSON", value = "{clientId: app, clientSecret: hoist-azcred-Secret-55}", says = " is set but is not valid JSON %(it breaks at line 1, column 2;" },
  { name = "truncated", value = '{"clientId":"app","clientSecret":"hoist-azcred-Secret-55', says = " is set but is not valid JSON" },
  { name = "wrong type", value = '{"clientId":"app","clientSecret":"hoist-azcred-Secret-55","tenantId":["t"]}', says = ": 'tenantId' must be a string, not an array" },
}, function(row)
  local dir = support.tmpdir("hoist-azcred")
  support.write(dir .. "/child.lua", "hoist.azure.credential {}\n")
  local env = { PATH = support.root .. "/tests/tools:" .. (E("PATH") or "/usr/bin:/bin") }  -- the az stand-in is there
  for k, v in pairs(BASE_ENV) do env[k] = v end
  env.AZURE_CREDENTIALS = row.value
  local r = support.run_hoist({ "run", dir .. "/child.lua", "--state-dir", dir .. "/state" }, { env = env, timeout = 60 })
  t.eq(r.code, 1, r.stderr)
  t.match(r.stderr, "invalid_argument: azure credential 'client_secret': AZURE_CREDENTIALS" .. row.says)
  t.no_match(r.stdout .. r.stderr, "az login")
  t.no_match(r.stdout .. r.stderr, "hoist-azcred-Secret-55")
end)

t.case("az_cli: the last source, through `az account get-access-token` (tests/tools/az)", function()
  need_emulator()
  local out = run_child({ T_SOURCE = "az_cli", T_AZ = support.root .. "/tests/tools/az", T_ARM = "0" })
  t.eq(out.source, "az_cli")
  t.match(out.tokens[1], "^fake%-az%-token%-")
end)

t.case("an OIDC-federated run outlives its first assertion and its first token", function()
  need_emulator()
  local before_settings = control("GET", "settings")
  control("POST", "settings", { token_lifetime = 4, github_token_lifetime = 3 })
  local ok, err = pcall(function()
    local out = run_child({
      T_SOURCE = "oidc", T_WAIT = "5",
      ACTIONS_ID_TOKEN_REQUEST_URL = E("HOIST_TEST_AZURE_OIDC_URL"),
      ACTIONS_ID_TOKEN_REQUEST_TOKEN = E("HOIST_TEST_AZURE_OIDC_TOKEN"),
      AZURE_CLIENT_ID = E("HOIST_TEST_AZURE_FEDERATED_CLIENT_ID"), AZURE_TENANT_ID = TENANT,
    }, { E("HOIST_TEST_AZURE_OIDC_TOKEN") })
    -- the second ARM call came after the first assertion (3 s) and token (4 s) had expired; the
    -- emulator refuses an expired assertion (AADSTS700024), so its success needed a fresh one
    t.eq(out.status, 200)
    t.eq(#out.tokens, 2)
    t.ok(out.tokens[1] ~= out.tokens[2], "a new Entra token after the first expired")
  end)
  control("POST", "settings", { token_lifetime = before_settings.token_lifetime,
                                github_token_lifetime = before_settings.github_token_lifetime })
  if not ok then error(err, 0) end
end, { timeout = 120 })

t.case("a refused secret says which source failed and keeps Entra's AADSTS code", function()
  need_emulator()
  -- the right secret first, so a token for this client is cached: the wrong one must not get it
  local right = hoist.azure.credential { source = "client_secret", tenant_id = TENANT,
                                         client_id = E("HOIST_TEST_AZURE_CLIENT_ID"),
                                         client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
  t.ok(right:get_token().token ~= "")
  local c = hoist.azure.credential { source = "client_secret", tenant_id = TENANT, client_id = E("HOIST_TEST_AZURE_CLIENT_ID"),
                                     client_secret = "not-the-right-secret-123" }
  local ok, e = pcall(c.get_token, c)
  t.eq(ok, false)
  t.eq(e.code, "unauthorized")
  t.match(e.message, "^azure credential 'client_secret': token for https://management%.azure%.com/%.default: AADSTS7000215")
  t.eq(e.details.aadsts, "AADSTS7000215")
  t.ok(not e.message:find("not-the-right-secret-123", 1, true))
end)
