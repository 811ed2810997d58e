-- examples/appservice/deploy.lua: a container on Azure App Service (Web App for Containers),
-- pulled from a private registry with a token, staged on a slot by digest, checked, swapped.
--
--   export AZURE_CLIENT_ID=... AZURE_TENANT_ID=... AZURE_CLIENT_SECRET=... AZURE_SUBSCRIPTION_ID=...
--   export REGISTRY_PASSWORD=...        # the registry token (a secret: never printed)
--   hoist run examples/appservice/deploy.lua --set image=myacr.azurecr.io/web:1.2.0 \
--     --set resource_group=web-rg --set name=my-web --set registry_username=puller
--   ... --set update=webhook --set restart=true   # the tag + the CD webhook, then a restart
--
-- A container that does not answer on WEBSITES_PORT fails the deploy with a message naming
-- WEBSITES_PORT and the image's EXPOSE; production keeps serving the previous version (the
-- new one only ever ran on the slot). `hoist rollback <run-id>` finishes a killed run's undo.
-- With HOIST_NOTIFY_SLACK, HOIST_NOTIFY_TEAMS or HOIST_NOTIFY_WEBHOOK set (or --set notify=...),
-- every run ends with a notification of its outcome (hoist.notify).
local target = require "hoist.targets.appservice"
local appservice = hoist.azure.appservice

return hoist.pipeline.define {
  name = "appservice-example",
  version = "1.0.0",
  requires = ">=0.1 <2",
  description = "Deploy a container image to an App Service web app through a staging slot",
  -- notify* parameters (hoist.notify): every run ends with a notification of its outcome
  notify = function(p)
    return hoist.notify.from_params(p, { facts = { target = "appservice", service = p.name, image = p.image } })
  end,
  params = hoist.notify.with_params {
    image = { type = "string", required = true, description = "Image to deploy (repository:tag[@digest])" },
    resource_group = { type = "string", default = "hoist-web-rg", description = "Resource group" },
    name = { type = "string", default = "hoist-web", description = "Web app name" },
    location = { type = "string", default = "westeurope", description = "Region" },
    slot = { type = "string", default = "staging", description = "Slot to stage on (\"\": in place)" },
    update = { type = "string", default = "config", allowed = { "config", "webhook" }, description = "How the new image is taken" },
    container_port = { type = "number", default = 8000, description = "Port the app listens on (WEBSITES_PORT)" },
    health_path = { type = "string", default = "/", description = "Path answering 200" },
    start_time_limit = { type = "number", default = 230, description = "WEBSITES_CONTAINER_START_TIME_LIMIT" },
    registry_username = { type = "string", env = "REGISTRY_USERNAME", description = "Registry user" },
    registry_password = { type = "string", secret = true, env = "REGISTRY_PASSWORD", description = "Registry password or token" },
    secret_env = { type = "map", secret = true, default = {}, description = "App settings whose values are secrets" },
    restart = { type = "boolean", default = false, description = "Restart the app after the deploy and check it again" },
  },
  stages = {
    { name = "deploy", timeout = 1200, run = function(ctx)
        local p = ctx.params
        local r = target.deploy { ctx = ctx, service = p.name, image = p.image, resource_group = p.resource_group,
          location = p.location, slot = p.slot, update = p.update, container_port = p.container_port,
          health_path = p.health_path, start_time_limit = p.start_time_limit, registry_username = p.registry_username,
          registry_password = p.registry_password, secret_env = p.secret_env }
        ctx:summary("Serving", ("%s at %s (%s)"):format(r.image, r.url, tostring(r.digest)))
        return r
      end },
    { name = "restart", timeout = 600, run = function(ctx)
        local p, out = ctx.params, ctx.outputs.deploy
        if not p.restart then return {} end
        local ref = { resource_group = p.resource_group, name = p.name }
        local cursor = appservice.log_cursor(ref)
        appservice.restart(ref)
        ref.image, ref.after, ref.timeout = out.image, cursor, p.start_time_limit + 120
        local started = appservice.wait_started(ref)
        if out.digest and started.digest ~= out.digest then
          hoist.error { code = "rollout_failed", message = ("after the restart %s runs %s, not %s"):format(p.name,
            tostring(started.digest), out.digest) }
        end
        ctx:summary("Restarted", ("%s runs %s again"):format(p.name, tostring(started.digest)))
        return { digest = started.digest }
      end },
  },
}
