-- examples/containerapp/deploy.lua: a container on Azure Container Apps with external ingress
-- on port 8000, pulled from a registry (ACR) with a password kept as an app secret. Each
-- deploy is a new revision: hoist waits until it is healthy with running replicas, gives it a
-- canary share of the traffic, checks the app's hostname, then moves all traffic to it. An
-- unhealthy revision fails with its system and console logs; the traffic goes back to the
-- previous revision and the new one is deactivated. Then, like `az acr repository list` and
-- `az acr repository show-tags`, it prints the registry's repositories and the tags of the
-- deployed repository (JSON arrays, as az prints them), through ACR's data plane with only the
-- Azure credential (an Entra token exchanged for an ACR token: no az, no docker login).
-- With HOIST_NOTIFY_SLACK, HOIST_NOTIFY_TEAMS or HOIST_NOTIFY_WEBHOOK set (or --set notify=...),
-- every run ends with a notification of its outcome (hoist.notify).
--
--   export AZURE_CLIENT_ID=... AZURE_TENANT_ID=... AZURE_CLIENT_SECRET=... AZURE_SUBSCRIPTION_ID=...
--   export REGISTRY_USERNAME=myacr REGISTRY_PASSWORD=...
--   hoist run examples/containerapp/deploy.lua --set image=myacr.azurecr.io/api:1.4.0 \
--     --set resource_group=api-rg --set name=api
local target = require "hoist.targets.containerapp"
local acr = hoist.azure.acr

return hoist.pipeline.define {
  name = "containerapp-example",
  version = "1.0.0",
  requires = ">=0.1 <2",
  description = "Deploy a container image to a Container App as a new revision, with a canary",
  -- notify* parameters (hoist.notify): every run ends with a notification of its outcome
  notify = function(p)
    return hoist.notify.from_params(p, { facts = { target = "containerapp", service = p.name, image = p.image } })
  end,
  params = hoist.notify.with_params {
    image = { type = "string", required = true, description = "Image to deploy" },
    resource_group = { type = "string", default = "hoist-aca-rg", description = "Resource group" },
    name = { type = "string", default = "hoist-api", description = "Container app name" },
    location = { type = "string", default = "westeurope", description = "Region" },
    container_port = { type = "number", default = 8000, description = "Ingress target port" },
    health_path = { type = "string", default = "/", description = "Path answering 200" },
    canary = { type = "number", default = 20, description = "Percent of traffic for the canary step" },
    revision_timeout = { type = "number", default = 600, description = "Seconds a revision gets to become healthy" },
    registry_username = { type = "string", env = "REGISTRY_USERNAME", description = "Registry user" },
    registry_password = { type = "string", secret = true, env = "REGISTRY_PASSWORD", description = "Registry password" },
    secret_env = { type = "map", secret = true, default = {}, description = "Environment whose values are secrets" },
  },
  stages = {
    { name = "deploy", timeout = 1800, run = function(ctx)
        local p = ctx.params
        local r = target.deploy { ctx = ctx, service = p.name, image = p.image, resource_group = p.resource_group,
          location = p.location, container_port = p.container_port, health_path = p.health_path, canary = p.canary,
          revision_timeout = p.revision_timeout, registry_username = p.registry_username,
          registry_password = p.registry_password, secret_env = p.secret_env }
        ctx:summary("Serving", ("revision %s (%s) at %s"):format(r.revision, r.image, tostring(r.url)))
        return r
      end },
    -- az acr repository list --name <registry>; az acr repository show-tags --name <registry> --repository <repo>
    { name = "registry", timeout = 120, run = function(ctx)
        local ref = hoist.image.parse(ctx.params.image)
        local server, repository = ref.registry, ref.path
        local credential = hoist.azure.credential() -- the chain: AZURE_CLIENT_ID/... as for the deploy
        local repositories = acr.repositories { registry = server, credential = credential }
        local tags = acr.tags { registry = server, repository = repository, credential = credential }
        print(("$ az acr repository list --name %s"):format(server))
        print(hoist.json.encode(repositories, { pretty = true }))
        print(("$ az acr repository show-tags --name %s --repository %s"):format(server, repository))
        print(hoist.json.encode(tags, { pretty = true }))
        ctx:summary("Registry", ("%s: %d repositories; %s has tags %s"):format(server, #repositories, repository,
          table.concat(tags, ", ")))
        return { registry = server, repositories = repositories, repository = repository, tags = tags }
      end },
  },
}
