-- hoist.registry against the real registries of tests/env (up.sh writes /tmp/hoist-env/env.sh):
-- 127.0.0.1:5000 anonymous, :5001 basic auth, :5002 token auth (token server :5003, with the
-- ACR exchange). Images are pushed with the docker CLI; the two-platform index is written
-- with hoist.http. Skipped loudly without HOIST_TEST_DOCKER=1; failed instead when CI=true.
local t = require "hoist.test"
local registry = hoist.registry

local E = os.getenv
local BASE = E("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"
local ANON = E("HOIST_TEST_REGISTRY") or "127.0.0.1:5000"
local BASIC = E("HOIST_TEST_REGISTRY_BASIC") or "127.0.0.1:5001"
local TOKEN = E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002"
local BASIC_AUTH = { username = E("HOIST_TEST_REGISTRY_BASIC_USER") or "hoist",
                     password = E("HOIST_TEST_REGISTRY_BASIC_PASSWORD") or "hoist-basic-secret" }
local TOKEN_AUTH = { username = E("HOIST_TEST_REGISTRY_TOKEN_USER") or "hoist",
                     password = E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD") or "hoist-token-secret" }
local AAD = E("HOIST_TEST_ACR_AAD_TOKEN") or "hoist-aad-token"
local ACR_USER = E("HOIST_TEST_ACR_USER") or "00000000-0000-0000-0000-000000000000"
local TOKEN_SERVER = E("HOIST_TEST_TOKEN_SERVER") or "http://127.0.0.1:5003"
local SERVICE = E("HOIST_TEST_REGISTRY_TOKEN_SERVICE") or TOKEN
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local RUN = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local NS = "hoist-reg-" .. RUN -- every repository of this run lives under it
local MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
local OCI_INDEX = "application/vnd.oci.image.index.v1+json"

local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local function need_env() support.need_docker("registry integration test") end

local function with(base, extra)
  local o = {}
  for k, v in pairs(base) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local write = support.write

local function sh(argv) return hoist.exec(with(argv, { check = true, timeout = 300 })) end

---------------------------------------------------------------- setup (once, on first use)

local fx -- what setup() made

-- Builds two small images FROM the base image (a file each, no RUN: fast on vfs) and pushes
-- image a to all three registries and image b to the anonymous one, with a throw-away
-- DOCKER_CONFIG for the docker CLI's logins.
local function setup()
  need_env()
  if fx then return fx end
  local dir = sh({ "mktemp", "-d", "/tmp/hoist-registry-test.XXXXXX" }).stdout:match("%S+")
  local env = { DOCKER_CONFIG = dir .. "/docker" }
  sh { "docker", "login", BASIC, "-u", BASIC_AUTH.username, "--password-stdin", stdin = BASIC_AUTH.password, env = env }
  sh { "docker", "login", TOKEN, "-u", TOKEN_AUTH.username, "--password-stdin", stdin = TOKEN_AUTH.password, env = env }
  fx = { pushed = {} }
  for _, name in ipairs { "a", "b" } do
    local ctx = dir .. "/" .. name
    sh { "mkdir", "-p", ctx }
    write(ctx .. "/Dockerfile", ("FROM %s\nCOPY %s.txt /%s.txt\n"):format(BASE, name, name))
    write(ctx .. "/" .. name .. ".txt", ("image %s of run %s\n"):format(name, RUN))
    local local_tag = ("hoist-reg-test/%s:%s"):format(name, RUN)
    sh { "docker", "build", "-q", "-t", local_tag, ctx, env = env }
    fx[name] = local_tag
  end
  -- docker push prints "<tag>: digest: sha256:... size: N": the registry's Docker-Content-Digest
  local function push(local_tag, ref)
    sh { "docker", "tag", local_tag, ref, env = env }
    local out = sh({ "docker", "push", ref, env = env }).stdout
    sh { "docker", "rmi", ref, env = env }
    return assert(out:match("digest: (sha256:%x+)"), "no digest in docker push output: " .. out)
  end
  for _, reg in ipairs { ANON, BASIC, TOKEN } do
    local ref = ("%s/%s/app:a"):format(reg, NS)
    fx.pushed[reg] = { image = ref, digest = push(fx.a, ref) }
  end
  fx.b_image = ("%s/%s/app:b"):format(ANON, NS)
  fx.b_digest = push(fx.b, fx.b_image)
  sh { "docker", "rmi", fx.a, fx.b, env = env }
  sh { "rm", "-rf", dir }
  return fx
end

-- A two-platform index over images a and b (a Docker manifest list, or an OCI index), PUT
-- with hoist.http into their repository (a registry only accepts an index whose children it
-- has there).
local function index(media_type)
  media_type = media_type or MANIFEST_LIST
  local f = setup()
  f.indexes = f.indexes or {}
  if f.indexes[media_type] then return f.indexes[media_type] end
  local ma = registry.manifest(f.pushed[ANON].image)
  local mb = registry.manifest(f.b_image)
  local list = hoist.json.encode {
    schemaVersion = 2, mediaType = media_type,
    manifests = {
      { mediaType = ma.media_type, digest = ma.digest, size = ma.size, platform = { architecture = "amd64", os = "linux" } },
      { mediaType = mb.media_type, digest = mb.digest, size = mb.size, platform = { architecture = "arm64", os = "linux", variant = "v8" } },
    },
  }
  local tag = media_type == MANIFEST_LIST and "multi" or "multi-oci"
  local r = hoist.http.request { method = "PUT", url = ("http://%s/v2/%s/app/manifests/%s"):format(ANON, NS, tag),
    headers = { ["Content-Type"] = media_type }, body = list }
  t.eq(r.status, 201, "PUT index: " .. r.body)
  f.indexes[media_type] = { image = ("%s/%s/app:%s"):format(ANON, NS, tag), digest = r.headers["docker-content-digest"],
                            children = { ma.digest, mb.digest }, media_type = media_type }
  return f.indexes[media_type]
end

---------------------------------------------------------------- resolve and auth

t.cases("resolve gives the digest docker push reported", {
  { name = "anonymous", reg = ANON },
  { name = "basic auth", reg = BASIC, auth = BASIC_AUTH },
  { name = "token auth", reg = TOKEN, auth = TOKEN_AUTH },
  { name = "ACR exchange of an AAD token", reg = TOKEN, auth = { aad_token = AAD } },
}, function(row)
  local p = setup().pushed[row.reg]
  local r = registry.resolve { image = p.image, auth = row.auth }
  t.eq(r.digest, p.digest)
  t.eq(r.media_type, "application/vnd.docker.distribution.manifest.v2+json")
  t.eq(r.image, ("%s/%s/app@%s"):format(row.reg, NS, p.digest))
  t.ok(r.size > 0)
  t.eq(registry.resolve { image = p.image:gsub(":a$", "@" .. p.digest), auth = row.auth }.digest, p.digest)
end)

t.case("resolve matches the registry's own Docker-Content-Digest header", function()
  local p = setup().pushed[ANON]
  local head = hoist.http.request { method = "HEAD", url = ("http://%s/v2/%s/app/manifests/a"):format(ANON, NS),
    headers = { Accept = "application/vnd.docker.distribution.manifest.v2+json" } }
  t.eq(registry.resolve(p.image).digest, head.headers["docker-content-digest"])
end)

t.case("ACR: a refresh token as the password of the null user", function()
  local p = setup().pushed[TOKEN]
  local ex = hoist.http.request { method = "POST", url = TOKEN_SERVER .. "/oauth2/exchange",
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
    body = ("grant_type=access_token&service=%s&access_token=%s"):format(SERVICE, AAD) }
  t.eq(ex.status, 200)
  local refresh = hoist.secret(ex.json.refresh_token)
  t.eq(registry.resolve { image = p.image, auth = { username = ACR_USER, password = refresh } }.digest, p.digest)
  t.eq(registry.resolve { image = p.image, auth = { identity_token = refresh } }.digest, p.digest)
end)

t.cases("wrong or missing credentials are unauthorized with the registry's words", {
  { name = "basic, none", reg = BASIC },
  { name = "basic, wrong password", reg = BASIC, auth = { username = "hoist", password = "not-the-password" } },
  { name = "token, none (anonymous token grants nothing)", reg = TOKEN },
  { name = "token, wrong password", reg = TOKEN, auth = { username = "hoist", password = "not-the-password" } },
  { name = "ACR, wrong AAD token", reg = TOKEN, auth = { aad_token = "not-an-aad-token" } },
}, function(row)
  local p = setup().pushed[row.reg]
  local err = t.raises(function() registry.resolve { image = p.image, auth = row.auth } end, "unauthorized")
  t.ok(err.details.errors or err.details.error or err.details.body, "the remote's own error is kept")
  t.no_match(tostring(err) .. hoist.json.encode(err.details), "not-the-password")
  t.no_match(tostring(err) .. hoist.json.encode(err.details), "not-an-aad-token")
end)

-- A wrong password must not read as a missing one: the message says the registry (or its
-- token server) refused the credentials that were given, and whose they were.
t.cases("a 401 says given credentials were rejected, and missing ones missing", {
  { name = "basic, wrong password", reg = BASIC, auth = { username = "hoist", password = "not-the-password" },
    says = "rejected the credentials given %(user 'hoist' from the call's auth option%)" },
  { name = "token, wrong password", reg = TOKEN, auth = { username = "hoist", password = "not-the-password" },
    says = "token server rejected the credentials given %(user 'hoist' from the call's auth option%)" },
  { name = "basic, none", reg = BASIC, says = "give credentials with registry.login" },
}, function(row)
  local p = setup().pushed[row.reg]
  local err = t.raises(function() registry.resolve { image = p.image, auth = row.auth } end, "unauthorized", row.says)
  t.match(tostring(err), row.reg:gsub("%p", "%%%0"))
  if row.auth then t.no_match(tostring(err), "give credentials") end
  t.no_match(tostring(err) .. hoist.json.encode(err.details), "not%-the%-password")
end)

t.case("a wrong password from docker's config.json is rejected, not missing", function()
  local p = setup().pushed[BASIC]
  local dir = sh({ "mktemp", "-d", "/tmp/hoist-registry-cfg.XXXXXX" }).stdout:match("%S+")
  local auth = sh({ "sh", "-c", "printf %s hoist:not-the-password | base64" }).stdout:match("%S+")
  write(dir .. "/config.json", hoist.json.encode { auths = { [BASIC] = { auth = auth } } })
  local script = dir .. "/check.lua"
  write(script, ("print(hoist.registry.resolve(%q).digest)"):format(p.image))
  local bin = E("HOIST_BIN") or "/proc/self/exe"
  local r = hoist.exec { bin, "run", "--state-dir", dir .. "/state", script, timeout = 60,
    env = { DOCKER_CONFIG = dir, PATH = E("PATH"), HOIST_LUA_PATH = E("HOIST_LUA_PATH") or "" } }
  t.ok(r.code ~= 0, "the resolve fails")
  t.match(r.stderr, "rejected the credentials given %(user 'hoist' from docker's config.json%)")
  t.no_match(r.stdout .. r.stderr, "not%-the%-password")
  sh { "rm", "-rf", dir }
end)

t.case("login keeps credentials for the run; logout forgets them", function()
  local p = setup().pushed[BASIC]
  t.eq(registry.login(with(BASIC_AUTH, { registry = BASIC })), BASIC)
  t.eq(registry.resolve(p.image).digest, p.digest)
  registry.logout(BASIC)
  t.raises(function() registry.resolve(p.image) end, "unauthorized")
end)

t.case("credentials are secrets: scrubbed from output", function()
  setup()
  registry.resolve { image = setup().pushed[BASIC].image, auth = BASIC_AUTH }
  t.no_match(hoist.scrub("pw=" .. BASIC_AUTH.password), BASIC_AUTH.password)
end)

t.case("docker config.json: credHelpers runs docker-credential-<helper> get", function()
  local p = setup().pushed[BASIC]
  local dir = sh({ "mktemp", "-d", "/tmp/hoist-registry-cred.XXXXXX" }).stdout:match("%S+")
  write(dir .. "/docker-credential-hoistfake", ([[#!/bin/sh
[ "$1" = get ] || exit 1
read host
echo "$host" > "%s/asked"
[ "$host" = "%s" ] || { echo "credentials not found in native keychain"; exit 1; }
printf '{"ServerURL":"%%s","Username":"%s","Secret":"%s"}' "$host"
]]):format(dir, BASIC, BASIC_AUTH.username, BASIC_AUTH.password))
  sh { "chmod", "+x", dir .. "/docker-credential-hoistfake" }
  write(dir .. "/config.json", hoist.json.encode { credHelpers = { [BASIC] = "hoistfake" } })
  local script = dir .. "/check.lua"
  write(script, ("print(hoist.registry.resolve(%q).digest)"):format(p.image))
  local bin = E("HOIST_BIN") or "/proc/self/exe"
  local r = hoist.exec { bin, "run", "--state-dir", dir .. "/state", script, timeout = 60,
    env = { DOCKER_CONFIG = dir, PATH = dir .. ":" .. E("PATH"), HOIST_LUA_PATH = E("HOIST_LUA_PATH") or "" } }
  t.eq(r.code, 0, r.stderr)
  t.match(r.stdout, p.digest:gsub("%p", "%%%0"))
  local f = assert(io.open(dir .. "/asked"))
  t.eq(f:read("*l"), BASIC)
  f:close()
  t.no_match(r.stdout .. r.stderr, BASIC_AUTH.password)
  sh { "rm", "-rf", dir }
end)

---------------------------------------------------------------- reads

t.case("an unknown image is not_found with MANIFEST_UNKNOWN", function()
  setup()
  local err = t.raises(function() registry.resolve(("%s/%s/app:nope"):format(ANON, NS)) end, "not_found", "manifest unknown")
  t.eq(err.details.errors[1].code, "MANIFEST_UNKNOWN")
  t.eq(registry.exists(("%s/%s/app:nope"):format(ANON, NS)), false)
  t.eq(registry.exists(setup().pushed[ANON].image), true)
end)

t.case("manifest returns the decoded manifest and its raw bytes", function()
  local p = setup().pushed[ANON]
  local m = registry.manifest(p.image)
  t.eq(m.digest, p.digest)
  t.eq(m.manifest.schemaVersion, 2)
  t.ok(#m.manifest.layers >= 2, "base layer + the COPY layer")
  t.eq(#m.raw, m.size)
end)

t.case("tags follow pagination (n = 2); retag writes new tags", function()
  local p = setup().pushed[ANON]
  for i = 1, 4 do
    local r = registry.retag { image = p.image, tag = "t" .. i }
    t.eq(r.digest, p.digest)
  end
  local tags = registry.tags { repository = ("%s/%s/app"):format(ANON, NS), n = 2 }
  table.sort(tags)
  local want = { a = true, b = true, t1 = true, t2 = true, t3 = true, t4 = true }
  for _, tag in ipairs(tags) do want[tag] = nil end
  t.eq(next(want), nil, "every tag listed")
  t.eq(#registry.tags { repository = ("%s/%s/app"):format(ANON, NS), n = 2, limit = 3 }, 3)
  t.eq(registry.resolve(("%s/%s/app:t3"):format(ANON, NS)).digest, p.digest)
end)

t.case("catalog lists repositories, paginated", function()
  setup()
  local repos = registry.catalog { registry = ANON, n = 2 }
  local found = {}
  for _, r in ipairs(repos) do found[r] = true end
  t.ok(found[NS .. "/app"], "our repository is listed")
  t.ok(#repos >= 2)
end)

---------------------------------------------------------------- copy

t.case("copy inside a registry mounts every blob", function()
  local p = setup().pushed[ANON]
  local layers = #registry.manifest(p.image).manifest.layers
  local r = registry.copy { from = p.image, to = ("%s/%s/mounted:v1"):format(ANON, NS) }
  t.eq(r.digest, p.digest)
  t.eq(r.blobs_mounted, layers + 1, "config and layers mounted")
  t.eq(r.blobs_copied, 0)
  t.eq(r.bytes, 0)
  t.eq(registry.resolve(("%s/%s/mounted:v1"):format(ANON, NS)).digest, p.digest)
  -- again: the destination has everything now
  local again = registry.copy { from = p.image, to = ("%s/%s/mounted:v2"):format(ANON, NS) }
  t.eq(again.blobs_skipped, layers + 1)
end)

t.cases("copy across registries streams the blobs and keeps the digest", {
  { name = "anonymous -> basic", to = BASIC, to_auth = BASIC_AUTH },
  { name = "anonymous -> token", to = TOKEN, to_auth = TOKEN_AUTH },
  { name = "token -> basic", from = TOKEN, from_auth = TOKEN_AUTH, to = BASIC, to_auth = BASIC_AUTH },
}, function(row)
  local f = setup()
  local p = f.pushed[row.from or ANON]
  local to = ("%s/%s/copied-%s:v1"):format(row.to, NS, (row.from or ANON):match(":(%d+)$"))
  local r = registry.copy { from = p.image, to = to, from_auth = row.from_auth, to_auth = row.to_auth }
  t.eq(r.digest, p.digest)
  t.eq(r.blobs_mounted, 0)
  t.ok(r.blobs_copied + r.blobs_skipped >= 2)
  t.ok(r.blobs_copied == 0 or r.bytes > 0)
  t.eq(registry.resolve { image = to, auth = row.to_auth }.digest, p.digest)
end)

t.cases("a two-platform index is copied with its children, digests preserved", {
  { name = "same registry", to = ANON },
  { name = "anonymous -> basic", to = BASIC, to_auth = BASIC_AUTH },
  { name = "anonymous -> token", to = TOKEN, to_auth = TOKEN_AUTH },
  { name = "OCI index, same registry", to = ANON, media_type = OCI_INDEX },
  { name = "OCI index, anonymous -> basic", to = BASIC, to_auth = BASIC_AUTH, media_type = OCI_INDEX },
}, function(row)
  local ix = index(row.media_type)
  local to = ("%s/%s/multi-copy:%s"):format(row.to, NS, row.media_type and "oci" or "v1")
  local r = registry.copy { from = ix.image, to = to, to_auth = row.to_auth }
  t.eq(r.digest, ix.digest)
  t.eq(r.media_type, ix.media_type)
  t.eq(r.manifests, 3)
  if row.to == ANON then
    t.ok(r.blobs_mounted + r.blobs_skipped >= 3)
    t.eq(r.blobs_copied, 0, "nothing streamed inside one registry")
  else
    t.eq(r.blobs_mounted, 0)
  end
  local m = registry.manifest { image = to, auth = row.to_auth }
  t.eq(m.digest, ix.digest)
  for _, child in ipairs(ix.children) do
    t.ok(registry.exists { image = ("%s/%s/multi-copy@%s"):format(row.to, NS, child), auth = row.to_auth },
      "child " .. child .. " is there")
  end
end)

t.case("copy without a destination tag keeps the source's tag", function()
  local p = setup().pushed[ANON]
  local r = registry.copy { from = p.image, to = ("%s/%s/keeptag"):format(ANON, NS) }
  t.match(r.image, "/keeptag:a@sha256:")
  t.eq(registry.resolve(("%s/%s/keeptag:a"):format(ANON, NS)).digest, p.digest)
end)

---------------------------------------------------------------- dry-run, delete

t.case("dry-run copy, retag and delete plan and change nothing", function()
  local p = setup().pushed[ANON]
  local to = ("%s/%s/planned:v1"):format(BASIC, NS)
  local r = registry.copy { from = p.image, to = to, to_auth = BASIC_AUTH, dry_run = true }
  t.eq(r.planned, true)
  local last = r.steps[#r.steps]
  t.eq(last.method, "PUT")
  t.match(last.url, "/v2/" .. NS:gsub("%p", "%%%0") .. "/planned/manifests/v1$")
  t.eq(last.action, "put_manifest")
  t.eq(last.body.schemaVersion, 2, "the manifest is the planned request's body")
  t.ok(#r.steps >= 3, "blob uploads and the manifest")
  t.eq(registry.exists { image = to, auth = BASIC_AUTH }, false)

  local rt = registry.retag { image = p.image, tag = "planned", dry_run = true }
  t.eq(rt.planned, true)
  t.eq(rt.steps[1].method, "PUT")
  t.eq(registry.exists(("%s/%s/app:planned"):format(ANON, NS)), false)

  local d = registry.delete { image = p.image, dry_run = true }
  t.eq(d.steps[1].method, "DELETE")
  t.match(d.steps[1].url, p.digest:gsub("%p", "%%%0"))
  t.eq(registry.exists(p.image), true)
end)

t.case("hoist run --dry-run reports plan events", function()
  local p = setup().pushed[ANON]
  local dir = sh({ "mktemp", "-d", "/tmp/hoist-registry-plan.XXXXXX" }).stdout:match("%S+")
  write(dir .. "/plan.lua", ("local r = hoist.registry.copy{from=%q, to=%q}\nassert(r.planned)"):format(
    p.image, ("%s/%s/dry:v1"):format(ANON, NS)))
  local bin = E("HOIST_BIN") or "/proc/self/exe"
  local r = hoist.exec { bin, "run", "--dry-run", "--log-format", "json", "--state-dir", dir .. "/state", dir .. "/plan.lua",
    timeout = 60, env = { HOIST_LUA_PATH = E("HOIST_LUA_PATH") or "" } }
  t.eq(r.code, 0, r.stderr)
  t.match(r.stdout .. r.stderr, '"kind":"plan"')
  t.eq(registry.exists(("%s/%s/dry:v1"):format(ANON, NS)), false)
  sh { "rm", "-rf", dir }
end)

t.case("delete removes a manifest (a tag is resolved first)", function()
  local p = setup().pushed[ANON]
  local to = ("%s/%s/doomed:v1"):format(ANON, NS)
  registry.copy { from = p.image, to = to }
  local d = registry.delete(to)
  t.eq(d.deleted, true)
  t.eq(d.digest, p.digest)
  t.eq(registry.exists(to), false)
  t.raises(function() registry.delete(to) end, "not_found")
end)
