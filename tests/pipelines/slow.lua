-- A pipeline that registers a compensation, then waits for a long time: the test kills it
-- with SIGKILL in the middle and finishes its rollback with `hoist rollback <id>`.
local pipeline = hoist.pipeline

pipeline.action("test.slow_undo", function(args)
  local f = assert(io.open(args.marker, "a"))
  f:write("undone ", args.what, "\n")
  f:close()
end)

return pipeline.define {
  name = "slow",
  version = "0.1.0",
  description = "Registers a compensation, then sleeps (killed by the rollback test)",
  params = {
    marker = { type = "string", required = true, description = "File the compensation appends to" },
    sleep = { type = "number", default = 60 },
  },
  stages = {
    { name = "change", run = function(ctx)
        ctx:on_rollback("test.slow_undo", { marker = ctx.params.marker, what = "change" })
        return { changed = true }
      end },
    { name = "wait", run = function(ctx)
        hoist.sleep(ctx.params.sleep)
      end },
  },
}
