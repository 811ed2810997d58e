-- examples/containerapp/deploy.lua: a container on Azure Container Apps with external ingress
-- on port 8000, pulled from a registry (ACR) with a password kept as an app secret. Each
-- deploy is a new revision: hoist waits until it is healthy with running replicas, gives it a
-- canary share of the traffic, checks the app's hostname, then moves all traffic to it. An
-- unhealthy revision fails with its system and console logs; the traffic goes back to the
-- previous revision and the new one is deactivated.
--
--   export AZURE_CLIENT_ID=... AZURE_TENANT_ID=... AZURE_CLIENT_SECRET=... AZURE_SUBSCRIPTION_ID=...
--   export REGISTRY_USERNAME=myacr REGISTRY_PASSWORD=...
--   hoist run examples/containerapp/deploy.lua --set image=myacr.azurecr.io/api:1.4.0 \
--     --set resource_group=api-rg --set name=api
local target = require "hoist.targets.containerapp"

return hoist.pipeline.define {
  name = "containerapp-example",
  version = "1.0.0",
  requires = ">=0.1 <2",
  description = "Deploy a container image to a Container App as a new revision, with a canary",
  params = {
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
  },
}
