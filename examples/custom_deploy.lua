-- custom_deploy.lua: your own deploy pipeline on the same runtime as the bundled ones.
-- It builds the sample app, runs it as a local container, waits until it is healthy, and
-- writes a release record: a stage of its own, with its own rollback action.
--
--   hoist run examples/custom_deploy.lua --help
--   hoist run examples/custom_deploy.lua --set port=18080
--   hoist run examples/custom_deploy.lua --set healthy=false     # fails, then rolls back
--   hoist run examples/custom_deploy.lua --dry-run               # prints the plan only
--
-- Needs a docker engine and the base image of examples/app (tests/env/up.sh builds it).
local pipeline = hoist.pipeline
local docker = hoist.docker

-- Rollback actions are named and take JSON arguments: `hoist rollback <run-id>` can run
-- them from another process after a crash (it runs this file again to define them, so the
-- top level only defines things). Each must be idempotent.
pipeline.action("example.remove_container", function(args)
  docker.rm { name = args.name, force = true, missing_ok = true }
end)

pipeline.action("example.remove_file", function(args)
  os.remove(args.path) -- a missing file is fine: nothing to undo
end)

return pipeline.define {
  name = "custom-deploy",
  version = "1.0.0",
  requires = ">=0.1 <2",
  description = "Build the sample app, run it locally, check its health, record the release",
  params = {
    context = { type = "string", default = "examples/app", description = "Docker build context" },
    image = { type = "string", default = "hoist-example/app:dev", pattern = "[%w%.%-_/:]+",
              description = "Tag of the image to build" },
    port = { type = "number", default = 18080, description = "Loopback port the app is published on" },
    healthy = { type = "boolean", default = true, description = "false builds a broken release (to see a rollback)" },
    record = { type = "string", default = ".hoist/last-release.json", description = "Where the release record goes" },
  },
  stages = {
    { name = "build", timeout = 600, retry = { attempts = 2, backoff = 5 },
      run = function(ctx)
        local img = docker.build { context = ctx.params.context, tags = { ctx.params.image },
                                   build_args = { VERSION = ctx.run.id, HEALTHY = tostring(ctx.params.healthy) } }
        ctx:summary("Image", ("%s (%s)"):format(ctx.params.image, img.id))
        return { id = img.id }
      end },

    { name = "run", timeout = 120,
      run = function(ctx)
        local name = "hoist-example-" .. ctx.run.id:gsub("[^%w]", "")
        -- Registered before the change: removing a container that never started is harmless,
        -- and a crash between `docker run` and this line cannot lose it.
        ctx:on_rollback("example.remove_container", { name = name })
        docker.run { image = ctx.params.image, name = name, ports = { ctx.params.port .. ":8080" } }
        local url = ("http://127.0.0.1:%d/"):format(ctx.params.port)
        if not ctx.dry_run then
          docker.wait_healthy { name = name, url = url .. "health", timeout = 30 }
        end
        ctx:summary("Running", url .. " (container " .. name .. ")")
        return { name = name, url = url }
      end },

    -- A stage of our own: nothing in the stdlib knows about release records.
    { name = "record",
      run = function(ctx)
        local path = ctx.params.record
        if ctx.dry_run then
          ctx:plan { action = "example.record", message = "write the release record " .. path }
          return {}
        end
        ctx:on_rollback("example.remove_file", { path = path })
        local f = assert(io.open(path, "w"))
        f:write(hoist.json.encode { run = ctx.run.id, image = ctx.params.image, id = ctx.outputs.build.id,
                                    url = ctx.outputs.run.url }, "\n")
        f:close()
        ctx:summary("Release record", path)
        return { path = path }
      end },
  },
}
