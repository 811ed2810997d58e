-- demo@2: the second major of the versioning demo. Breaking change against 1.x: the
-- greeting is now `message`, and it can be repeated.
local pipeline = hoist.pipeline

return pipeline.define {
  name = "demo",
  version = "2.0.1",
  requires = ">=0.1 <2",
  description = "Logs a message a few times and sleeps (versioning demo, major 2)",
  params = {
    message = { type = "string", default = "hello", description = "What to log" },
    times = { type = "number", default = 1, description = "How many times to log it" },
    delay = { type = "number", default = 0.01, description = "Seconds to sleep" },
  },
  stages = {
    { name = "greet", run = function(ctx)
        for _ = 1, ctx.params.times do ctx.log.info(ctx.params.message .. " from demo 2") end
        return { said = ctx.params.message, times = ctx.params.times }
      end },
    { name = "sleep", run = function(ctx)
        hoist.sleep(ctx.params.delay)
        ctx:summary(("demo 2 said %s %d time(s)"):format(ctx.outputs.greet.said, ctx.outputs.greet.times))
        return { slept = ctx.params.delay }
      end },
  },
}
