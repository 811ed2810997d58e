-- A pipeline that succeeds: a secret parameter, a parallel group, outputs, summary lines.
-- Used by the GitHub Actions, report and secret-leak tests.
local pipeline = hoist.pipeline

return pipeline.define {
  name = "ok",
  version = "1.0.0",
  requires = ">=0.1",
  description = "Succeeds, with a secret and a parallel group",
  params = {
    image = { type = "string", default = "registry.local/app:1", pattern = "[%w%.%-/:]+" },
    password = { type = "string", secret = true, env = "OK_PASSWORD", description = "Never printed" },
  },
  stages = {
    { name = "build", run = function(ctx)
        ctx.log.info("building with password " .. (ctx.params.password or "none"))
        ctx:summary("Image", ctx.params.image .. "@sha256:0123")
        return { digest = "sha256:0123", note = "pw=" .. (ctx.params.password or "") }
      end },
    { parallel = {
        { name = "scan", run = function(ctx) hoist.sleep(0.05); return { critical = 0 } end },
        { name = "sbom", run = function(ctx) hoist.sleep(0.02); return { packages = 3 } end },
      } },
    { name = "deploy", run = function(ctx)
        ctx:summary("Deployed", ("%s (critical: %d)"):format(ctx.outputs.build.digest, ctx.outputs.scan.critical))
        if ctx.dry_run then
          ctx:plan { action = "test.deploy", message = "deploy " .. ctx.params.image,
                     argv = { "deploy", "--image", ctx.params.image } }
          hoist.pipeline.plan { method = "PUT", url = "http://127.0.0.1:1/apps/app", body = { image = ctx.params.image } }
        end
        return { url = "http://127.0.0.1:8080" }
      end },
  },
}
