-- demo@1: a tiny pipeline that only logs and sleeps. It exists to show (and test) how
-- bundled pipelines are versioned: scripts/demo/v1.lua and v2.lua ship side by side.
local pipeline = hoist.pipeline

return pipeline.define {
  name = "demo",
  version = "1.2.0",
  requires = ">=0.1 <2",
  description = "Logs a greeting and sleeps (versioning demo, major 1)",
  params = {
    greeting = { type = "string", default = "hello", description = "What to log" },
    delay = { type = "number", default = 0.01, description = "Seconds to sleep" },
  },
  stages = {
    { name = "greet", run = function(ctx)
        ctx.log.info(ctx.params.greeting .. " from demo 1")
        return { said = ctx.params.greeting }
      end },
    { name = "sleep", run = function(ctx)
        hoist.sleep(ctx.params.delay)
        ctx:summary("demo 1 said " .. ctx.outputs.greet.said)
        return { slept = ctx.params.delay }
      end },
  },
}
