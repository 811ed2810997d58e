-- hoist.mlflow against tests/servers/mlflow_server.py (MLflow's REST API and error envelope,
-- its basic-auth app's 401/403): models:/ URIs, resolving aliases, stages, versions and latest,
-- every refusal (unknown model, version or alias, empty stage, registration not READY, failed
-- or killed run), auth (none, wrong, Bearer, Basic, lacking permission), server down, answers
-- that are not MLflow's JSON, tags written back, dry run, and the MLFLOW_TRACKING_* variables.
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local mlflow = hoist.mlflow

local SERVER = support.root .. "/tests/servers/mlflow_server.py"
local EDIT_TOKEN, READ_TOKEN = "hoist-mlflow-edit-7f3a9c", "hoist-mlflow-read-51be02"
local ALICE, BOB = { "alice", "alice-pw-3c81d0" }, { "bob", "bob-pw-9e44a7" }

-- One server for the file, started on first use; it exits with this process.
local state = {}
local function server()
  if state.base then return state.base end
  state.dir = support.tmpdir("hoist-mlflow-test")
  local port_file = state.dir .. "/port"
  state.task = hoist.spawn(function()
    return hoist.exec { "python3", SERVER, "--port-file", port_file, "--max-time", "600",
      "--token", EDIT_TOKEN .. ":EDIT", "--token", READ_TOKEN .. ":READ",
      "--user", ALICE[1] .. ":" .. ALICE[2] .. ":EDIT", "--user", BOB[1] .. ":" .. BOB[2] .. ":READ", timeout = 700 }
  end)
  for _ = 1, 200 do
    if support.read(port_file) then break end
    hoist.sleep(0.05)
  end
  local port = support.read(port_file)
  if not port then error("mlflow_server.py did not start (no port file)") end
  state.base = "http://127.0.0.1:" .. port:match("%d+")
  return state.base
end

local function client(extra)
  local o = { tracking_uri = server(), token = EDIT_TOKEN }
  for k, v in pairs(extra or {}) do o[k] = v end
  return mlflow.client(o)
end

t.cases("parse_uri: MLflow's forms", {
  { uri = "models:/churn@champion", want = { name = "churn", alias = "champion" } },
  { uri = "models:/churn/Production", want = { name = "churn", stage = "Production" } },
  { uri = "models:/churn/staging", want = { name = "churn", stage = "Staging" } },
  { uri = "models:/churn/3", want = { name = "churn", version = "3" } },
  { uri = "models:/churn/03", want = { name = "churn", version = "3" } },
  { uri = "models:/churn/latest", want = { name = "churn", latest = true } },
  { uri = "models:/Churn Model@prod", want = { name = "Churn Model", alias = "prod" } },
}, function(row)
  t.eq(mlflow.parse_uri(row.uri), row.want)
end)

t.cases("parse_uri: other forms are refused with the expected ones named", {
  { uri = "runs:/abc/model", err = "is not a models:/ URI" },
  { uri = "models:/churn", err = "names no version: add /<version>" },
  { uri = "models:/", err = "names no model" },
  { uri = "models:/churn/", err = "is not a model URI" },
  { uri = "models:/a/b/c", err = "is not a model URI" },
  { uri = "models:/churn@", err = "empty model name or alias" },
  { uri = "models:/@champion", err = "empty model name or alias" },
  { uri = "models:/churn/Prod", err = "invalid stage \"Prod\": must be one of None, Staging, Production, Archived" },
  { uri = "models://profile@databricks/churn/1", err = "names a registry host" },
  { uri = "models:/m-0123456789abcdef", err = "is a logged model id" },
}, function(row)
  t.raises(function() mlflow.parse_uri(row.uri) end, "invalid_argument", row.err)
end)

t.case("uri builds what parse_uri reads; a bad reference is refused", function()
  t.eq(mlflow.uri { name = "churn", alias = "champion" }, "models:/churn@champion")
  t.eq(mlflow.uri { name = "churn", version = 3 }, "models:/churn/3")
  t.eq(mlflow.uri { name = "churn", stage = "production" }, "models:/churn/Production")
  t.eq(mlflow.uri { name = "churn", latest = true }, "models:/churn/latest")
  for _, u in ipairs { "models:/churn@champion", "models:/churn/3", "models:/churn/Staging", "models:/churn/latest" } do
    t.eq(mlflow.uri(mlflow.parse_uri(u)), u)
  end
  t.raises(function() mlflow.uri { name = "churn" } end, "invalid_argument", "exactly one of version, alias, stage")
  t.raises(function() mlflow.uri { name = "churn", version = "3", alias = "x" } end, "invalid_argument", "exactly one of")
  t.raises(function() mlflow.uri { name = "a/b", version = "1" } end, "invalid_argument", "name")
  t.raises(function() mlflow.uri { name = "churn", version = "v3" } end, "invalid_argument", "whole number")
end)

t.cases("resolve: alias, stage, version and latest", {
  { ref = "models:/churn@champion", version = "2", kind = "alias", stage = "Production" },
  { ref = "models:/churn/Production", version = "2", kind = "stage" },
  { ref = "models:/churn/staging", version = "3", kind = "stage" },
  { ref = "models:/churn/3", version = "3", kind = "version" },
  { ref = { name = "churn", version = 3 }, version = "3", kind = "version" },
  { ref = { name = "churn", alias = "challenger" }, version = "3", kind = "alias" },
  { ref = { name = "churn", stage = "Production" }, version = "2", kind = "stage" },
  -- the highest version; its run is gone from the tracking server, which is not an error
  { ref = "models:/churn/latest", version = "8", kind = "latest", no_run = true },
}, function(row)
  local m = client():resolve(row.ref)
  t.eq(m.name, "churn")
  t.eq(m.version, row.version)
  t.eq(m.ref, row.kind)
  t.eq(m.status, "READY")
  t.eq(m.image_tag, row.version)
  t.eq(m.labels["dev.hoist.mlflow.model"], "churn")
  t.eq(m.labels["dev.hoist.mlflow.version"], row.version)
  t.eq(m.labels["org.opencontainers.image.version"], row.version)
  t.eq(m.labels["dev.hoist.mlflow.run-id"], m.run_id)
  t.match(m.labels["dev.hoist.mlflow.source"], "^mlflow%-artifacts:/1/")
  if row.stage then t.eq(m.current_stage, row.stage) end
  if row.no_run then
    t.eq(m.run, nil)
  else
    t.eq(m.run.status, "FINISHED")
    t.eq(m.run.run_id, m.run_id)
    t.eq(m.run.params, { lr = "0.01" })
    t.eq(m.run.metrics, { auc = 0.91 })
    t.eq(m.run.tags.git_sha, "abc1234")
  end
end)

t.case("resolve: the version's fields, tags and aliases; MLflow 3's model_id; the image tag from a tag", function()
  local c = client()
  local m = c:resolve "models:/churn@champion"
  t.eq(m.uri, "models:/churn@champion")
  t.eq(m.tags, { team = "growth" })
  t.eq(m.aliases, { "champion" })
  t.eq(m.run_id, "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d2")
  t.eq(m.source, "mlflow-artifacts:/1/a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d2/artifacts/model")
  t.eq(type(m.creation_timestamp), "number")
  t.eq(c:resolve("models:/churn/3").model_id, "m-0123456789abcdef")
  local f = c:resolve "models:/fraud@prod"
  t.eq(f.image_tag, "fraud-2026.12")
  t.eq(f.run.status, "RUNNING", "a model logged by a run still going is deployable")
  local bad = t.raises(function() c:resolve "models:/fraud@badtag" end, "invalid_argument", "not an image tag")
  t.match(bad.message, "hoist%.image%.tag = \"bad tag!\"")
end)

t.cases("resolve refuses what cannot be deployed, with MLflow's reason", {
  { name = "unknown model", ref = "models:/nope/1", code = "not_found",
    err = "get model version nope/1: Registered Model with name=nope not found %(HTTP 404 from 127%.0%.0%.1:%d+%)",
    error_code = "RESOURCE_DOES_NOT_EXIST" },
  { name = "unknown model by alias", ref = "models:/nope@champion", code = "not_found", err = "Registered Model with name=nope not found" },
  { name = "unknown version", ref = "models:/churn/99", code = "not_found",
    err = "Model Version %(name=churn, version=99%) not found", error_code = "RESOURCE_DOES_NOT_EXIST" },
  -- MLflow answers a missing alias with 400 INVALID_PARAMETER_VALUE: still a missing thing
  { name = "unknown alias", ref = "models:/churn@nope", code = "not_found",
    err = "get model version churn@nope: Registered model alias nope not found%. %(HTTP 400", error_code = "INVALID_PARAMETER_VALUE" },
  { name = "empty stage", ref = "models:/churn/Archived", ok = "1" },
  { name = "stage holding nothing", ref = "models:/empty/Production", code = "not_found",
    err = "no version of model empty is in stage Production" },
  { name = "no versions at all", ref = "models:/empty/latest", code = "not_found", err = "model empty has no versions" },
  { name = "pending registration", ref = "models:/churn@next", code = "conflict", retryable = true, reason = "PENDING_REGISTRATION",
    err = "models:/churn@next is version 4 of churn, which is still being registered %(PENDING_REGISTRATION%), not READY" },
  { name = "failed registration", ref = "models:/churn/5", code = "conflict", retryable = false, reason = "FAILED_REGISTRATION",
    err = "failed to register %(FAILED_REGISTRATION%): Failed to copy model artifacts" },
  { name = "failed run", ref = "models:/churn@failedrun", code = "conflict", reason = "RUN_FAILED",
    err = "version 6 of churn, whose source run a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6 %(train%-6%) ended FAILED" },
  { name = "killed run", ref = "models:/churn@killedrun", code = "conflict", reason = "RUN_KILLED", err = "ended KILLED" },
  { name = "failed run, check_run = false", ref = { model = "models:/churn@failedrun", check_run = false }, ok = "6" },
}, function(row)
  if row.ok then
    t.eq(client():resolve(row.ref).version, row.ok)
    return
  end
  local e = t.raises(function() client():resolve(row.ref) end, row.code, row.err)
  t.match(e.message, "^mlflow: ")
  if row.retryable ~= nil then t.eq(e.retryable, row.retryable) end
  if row.reason then t.eq(e.details.reason, row.reason) end
  if row.error_code then t.eq(e.details.error_code, row.error_code) end
end)

t.case("resolve with wait: a version being registered is read again until READY; without, or too short, refused", function()
  local c = client()
  -- the first read starts its registration clock (1.5 s)
  local e = t.raises(function() c:resolve "models:/warm@new" end, "conflict", "still being registered %(PENDING_REGISTRATION%), not READY")
  t.no_match(e.message, "after waiting")
  t.raises(function() c:resolve { model = "models:/churn@next", wait = 0.3 } end, "conflict",
    "still being registered %(PENDING_REGISTRATION%), not READY after waiting 0%.3s")
  local m = c:resolve { model = "models:/warm@new", wait = 20 }
  t.eq({ m.version, m.status, m.ref }, { "1", "READY", "alias" })
  t.eq(m.aliases, { "new" })
  t.raises(function() c:resolve { name = "warm", version = 1, wait = -1 } end, "invalid_argument", "wait")
end)

t.case("a stage is checked before any request; resolve needs a reference", function()
  local c = mlflow.client { tracking_uri = "http://127.0.0.1:9" }  -- nothing listens: no request may go out
  t.raises(function() c:resolve { name = "churn", stage = "Prod" } end, "invalid_argument", "invalid stage")
  t.raises(function() c:resolve "models:/churn" end, "invalid_argument", "names no version")
  t.raises(function() c:resolve { name = "churn" } end, "invalid_argument", "exactly one of")
  t.raises(function() c:resolve { model = "models:/churn/1", bogus = 1 } end, "invalid_argument", "bogus")
end)

t.case("Basic credentials: core.base64_encode gives RFC 4648's test vectors", function()
  local enc = require("hoist.native.core").base64_encode
  for plain, want in pairs { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
                             foobar = "Zm9vYmFy", ["alice:p\0w"] = "YWxpY2U6cAB3" } do
    t.eq(enc(plain), want)
  end
end)

t.cases("auth: MLflow's 401 and 403, with what to set or what was refused; no secret in the error", {
  { name = "no credentials", opts = {}, code = "unauthorized",
    err = "You are not authenticated%. .*%(HTTP 401 from .*no credentials were sent: set MLFLOW_TRACKING_TOKEN" },
  { name = "wrong token", opts = { token = "hoist-mlflow-wrong-0d9e" }, code = "unauthorized", err = "the server refused the Bearer token" },
  { name = "wrong password", opts = { username = ALICE[1], password = "hoist-mlflow-wrong-pw-1" }, code = "unauthorized",
    err = "the server refused the Basic credentials of user \"alice\"" },
  { name = "Basic", opts = { username = ALICE[1], password = ALICE[2] }, ok = true },
  { name = "Bearer, read only", opts = { token = READ_TOKEN }, ok = true },
  { name = "Basic over a token (MLflow's order)", opts = { username = ALICE[1], password = ALICE[2], token = "hoist-mlflow-wrong-0d9e" }, ok = true },
}, function(row)
  local o = { tracking_uri = server() }
  for k, v in pairs(row.opts) do o[k] = v end
  local c = mlflow.client(o)
  if row.ok then
    t.eq(c:resolve("models:/churn@champion").version, "2")
    return
  end
  local e = t.raises(function() c:resolve "models:/churn@champion" end, row.code, row.err)
  t.eq(e.details.status, 401)
  for _, secret in pairs { row.opts.token, row.opts.password } do t.no_match(tostring(e), secret) end
end)

t.cases("auth: a caller that may only read cannot write tags (403 Permission denied)", {
  { name = "Bearer", opts = { token = READ_TOKEN }, who = "the Bearer token lacks the permission" },
  { name = "Basic", opts = { username = BOB[1], password = BOB[2] }, who = "the Basic credentials of user \"bob\" lacks" },
}, function(row)
  local o = { tracking_uri = server() }
  for k, v in pairs(row.opts) do o[k] = v end
  local e = t.raises(function()
    mlflow.client(o):set_model_version_tag { name = "churn", version = 1, key = "k", value = "v" }
  end, "forbidden", "set tag k of model version churn/1: Permission denied %(HTTP 403")
  t.match(e.message, row.who)
end)

t.case("server down: unavailable, retryable, naming the call", function()
  local c = mlflow.client { tracking_uri = "http://127.0.0.1:" .. support.free_port(), token = EDIT_TOKEN }
  local e = t.raises(function() c:resolve "models:/churn/2" end, "unavailable", "^unavailable: mlflow: get model version churn/2: ")
  t.eq(e.retryable, true)
end)

t.cases("answers that are not MLflow's", {
  { name = "malformed JSON", prefix = "/_fault/malformed", code = "unavailable", err = "is not MLflow's JSON %(HTTP 200, application/json%)" },
  { name = "an HTML page", prefix = "/_fault/html", code = "unavailable", err = "is not MLflow's JSON %(HTTP 200, text/html" },
  { name = "not an MLflow server", prefix = "/elsewhere", code = "not_found", err = "is http://127%.0%.0%.1:%d+/elsewhere an MLflow tracking server%?" },
  { name = "INTERNAL_ERROR", prefix = "/_fault/500", code = "unavailable", err = "database is locked %(HTTP 500", retryable = true },
}, function(row)
  local c = mlflow.client { tracking_uri = server() .. row.prefix, token = EDIT_TOKEN }
  local e = t.raises(function() c:get_model_version { name = "churn", version = "2" } end, row.code, row.err)
  if row.retryable ~= nil then t.eq(e.retryable, row.retryable) end
  if row.code == "unavailable" and not row.retryable then t.eq(e.retryable, false) end
end)

t.case("reads: registered model, latest versions, search with pages, runs", function()
  local c = client()
  local rm = c:get_registered_model "churn"
  t.eq(rm.description, "Churn classifier")
  t.eq(rm.tags, { owner = "growth" })
  t.eq(rm.aliases.champion, "2")
  t.eq(rm.aliases.next, "4")
  t.ok(#rm.latest_versions >= 1)
  local latest = c:get_latest_versions { name = "churn", stages = { "production", "Staging" } }
  local got = {}
  for _, v in ipairs(latest) do got[v.current_stage] = v.version end
  t.eq(got, { Production = "2", Staging = "3" })
  t.eq(#c:get_latest_versions { name = "empty" }, 0)
  local all = c:search_model_versions { filter = "name='churn'", max_results = 100 }
  t.eq(#all, 8)
  t.eq(all[1].version, "8", "newest first")
  local some = c:search_model_versions { filter = "name='churn'", max_results = 3 }
  t.eq(#some, 3)
  t.eq(#c:search_model_versions { filter = "name='nothing'" }, 0)
  -- a server that caps its pages: every page is followed, the token sent back
  local paged = mlflow.client { tracking_uri = server() .. "/_fault/pages", token = EDIT_TOKEN }
  local versions = {}
  for _, v in ipairs(paged:search_model_versions { filter = "name='churn'" }) do versions[#versions + 1] = v.version end
  t.eq(versions, { "8", "7", "6", "5", "4", "3", "2", "1" })
  t.eq(#paged:search_model_versions { filter = "name='churn'", max_results = 5 }, 5)
  local r = c:get_run "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
  t.eq({ r.status, r.run_name, r.experiment_id }, { "FAILED", "train-6", "1" })
  t.raises(function() c:get_run "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0" end, "not_found", "Run with id=d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0 not found")
  t.match(tostring(c), "^hoist%.mlflow%.Client%(http://127%.0%.0%.1:%d+%)$")
end)

t.case("mark_deployed writes the digest, target, time and run as version tags; a dry run only plans them", function()
  local c = client()
  local digest = "sha256:" .. ("ab"):rep(32)
  local tags = c:mark_deployed { name = "churn", version = "3", digest = digest, target = "kubernetes/ns/model", run = "run-42" }
  t.eq(tags["hoist.deployed.digest"], digest)
  t.match(tags["hoist.deployed.at"], "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$")
  local v = c:get_model_version { name = "churn", version = 3 }
  t.eq(v.tags["hoist.deployed.digest"], digest)
  t.eq(v.tags["hoist.deployed.target"], "kubernetes/ns/model")
  t.eq(v.tags["hoist.deployed.at"], tags["hoist.deployed.at"])
  t.eq(v.tags["hoist.deployed.run"], "run-42")
  local core = require "hoist.native.core"
  local previous = core.set_dry_run(true)
  local ok, err = pcall(c.mark_deployed, c, { name = "churn", version = "3", digest = "sha256:" .. ("cd"):rep(32), target = "dry" })
  core.set_dry_run(previous)
  t.ok(ok, tostring(err))
  t.eq(c:get_model_version({ name = "churn", version = 3 }).tags["hoist.deployed.target"], "kubernetes/ns/model", "not written in a dry run")
  t.raises(function() c:mark_deployed { name = "churn", version = "99", digest = digest, target = "x" } end, "not_found",
    "set tag hoist%.deployed%.digest of model version churn/99: Model Version %(name=churn, version=99%) not found")
  t.raises(function() c:mark_deployed { name = "churn", version = "3", target = "x" } end, "invalid_argument", "digest")
end)

t.case("client options: the tracking URI must be http(s); Basic needs both halves", function()
  t.raises(function() mlflow.client { tracking_uri = "databricks" } end, "invalid_argument", "is not an http:// or https:// URL %(from option tracking_uri%)")
  t.raises(function() mlflow.client { tracking_uri = "http://127.0.0.1:9", username = "alice" } end, "invalid_argument",
    "needs both a username and a password; only the username is set")
  t.raises(function() mlflow.client { tracking_uri = "http://127.0.0.1:9", tokn = "x" } end, "invalid_argument", "tokn")
end)

t.case("the MLFLOW_TRACKING_* variables: URI and Basic credentials, as MLflow's client reads them", function()
  local script = state.dir and (state.dir .. "/env.lua") or (support.tmpdir("hoist-mlflow-test") .. "/env.lua")
  server()
  support.write(script, [[
local m = hoist.mlflow.resolve("models:/churn@champion")
print("resolved " .. m.version .. " " .. m.run.status)
local ok, e = pcall(hoist.mlflow.resolve, "models:/churn@nope")
print("error " .. tostring(e))
]])
  local env = { MLFLOW_TRACKING_URI = server(), MLFLOW_TRACKING_USERNAME = ALICE[1], MLFLOW_TRACKING_PASSWORD = ALICE[2],
                MLFLOW_TRACKING_TOKEN = "" }
  local r = support.run_hoist({ "run", script, "--no-color" }, { env = env, timeout = 60 })
  local out = r.stdout .. r.stderr
  t.eq(r.code, 0, out)
  t.match(out, "resolved 2 FINISHED")
  t.match(out, "error not_found: mlflow: get model version churn@nope")
  t.no_match(out, ALICE[2])
  env.MLFLOW_TRACKING_PASSWORD = "hoist-mlflow-wrong-pw-2"
  r = support.run_hoist({ "run", script, "--no-color" }, { env = env, timeout = 60 })
  out = r.stdout .. r.stderr
  t.ok(r.code ~= 0, "a refused password fails the run")
  t.match(out, "unauthorized")
  t.no_match(out, "hoist%-mlflow%-wrong%-pw%-2")
end)

t.case("clean up", function()
  if state.task then state.task:cancel() end
  if state.dir then hoist.fs.remove(state.dir, { recursive = true }) end
end)
