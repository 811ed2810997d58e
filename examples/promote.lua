-- Build examples/app, push it tagged with the commit, then promote the pushed DIGEST to a
-- production repository: the bytes that were built and pushed are the bytes promoted, even if
-- someone pushes the same tag again meanwhile. Promotion is a registry-side copy by digest
-- (hoist.registry.copy: no pull, no rebuild) tagged with the commit, plus a retag with an
-- env-date tag such as prod-20260406.
--
--   tests/env/up.sh && . /tmp/hoist-env/env.sh
--   hoist run examples/promote.lua
--   hoist run examples/promote.lua --set env=staging --set registry=127.0.0.1:5000 --dry-run
--
-- Parameters (--set key=value): registry (127.0.0.1:5000), repository (hoist-example/app),
-- prod_repository (hoist-example/app-prod), env (prod), context (examples/app beside this
-- file), tag (default: the commit's short sha, "-dirty" when the tree is dirty).
local docker, tags, registry_client = hoist.docker, hoist.tags, hoist.registry

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local args = hoist.args
local registry = args.registry or "127.0.0.1:5000"
local repository = args.repository or "hoist-example/app"
local prod_repository = args.prod_repository or "hoist-example/app-prod"
local env = args.env or "prod"
local context = args.context or (here .. "/app")

-- Commit facts, or none when the example runs outside a git checkout.
local ok, git = pcall(hoist.git.info, { dir = context })
if not ok then
  hoist.log.warn("no git facts (" .. tostring(git.message or git) .. "): tagging by time")
  git = nil
end
local tag = args.tag or (git and tags.for_commit { git = git }[1]) or ("local-" .. os.date("!%Y%m%d%H%M%S"))
local image = ("%s/%s:%s"):format(registry, repository, tag)

-- 1. build and push by commit
docker.build { context = context, tags = { image }, build_args = { VERSION = tag }, git = git }
local pushed = docker.push(image)

-- 2. promote the digest: copy it to the production repository under the commit tag, then
--    give that manifest the env-date tag too (a retag: no blob moves)
local source = pushed.planned and image or ("%s/%s@%s"):format(registry, repository, pushed.digest)
local prod_image = ("%s/%s:%s"):format(registry, prod_repository, tag)
local copied = registry_client.copy { from = source, to = prod_image }
local promoted = { prod_image }
for _, t in ipairs(tags.for_commit { strategy = "env-date", env = env }) do
  local on = copied.planned and prod_image or ("%s/%s@%s"):format(registry, prod_repository, copied.digest)
  registry_client.retag { image = on, tag = t }
  promoted[#promoted + 1] = ("%s/%s:%s"):format(registry, prod_repository, t)
end

-- 3. check: every production tag now resolves to the pushed digest
if not pushed.planned then
  for _, ref in ipairs(promoted) do
    local got = registry_client.resolve(ref)
    got = type(got) == "table" and got.digest or got
    if got ~= pushed.digest then
      hoist.error { code = "conflict", message = ("%s resolves to %s, not the pushed %s"):format(ref, tostring(got), pushed.digest) }
    end
  end
end

local would = pushed.planned and "would be " or ""
print(("%sbuilt and pushed %s\n  digest %s"):format(would, image, tostring(pushed.digest)))
for _, ref in ipairs(promoted) do print(("  %spromoted to %s"):format(would, ref)) end
return { image = image, digest = pushed.digest, promoted = promoted }
