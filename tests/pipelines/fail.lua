-- Two stages register compensations, the third fails: the compensations run in reverse.
-- `bad_undo=true` makes the first compensation fail (rollback incomplete, exit code 3).
-- `policy=true` fails the last stage with policy_violation (exit code 4).
local pipeline = hoist.pipeline

pipeline.action("test.fail_undo", function(args)
  if args.fail then hoist.error { code = "unavailable", message = "cannot undo " .. args.label .. " (on purpose)" } end
  local f = assert(io.open(args.marker, "a"))
  f:write(args.label, "\n")
  f:close()
end)

return pipeline.define {
  name = "fail",
  version = "0.1.0",
  params = {
    marker = { type = "string", required = true },
    bad_undo = { type = "boolean", default = false },
    policy = { type = "boolean", default = false },
    token = { type = "string", secret = true, env = "FAIL_TOKEN" },
  },
  stages = {
    { name = "one", run = function(ctx)
        ctx:on_rollback("test.fail_undo", { marker = ctx.params.marker, label = "one", fail = ctx.params.bad_undo })
        ctx:summary("Changes", "one made a change")
      end },
    { name = "two", run = function(ctx)
        ctx:on_rollback("test.fail_undo", { marker = ctx.params.marker, label = "two" })
      end },
    { name = "three", run = function(ctx)
        if ctx.params.policy then
          hoist.error { code = "policy_violation", message = "2 critical vulnerabilities" }
        end
        hoist.error { code = "rollout_failed", message = "the new version never became healthy",
                      details = { reason = "CrashLoopBackOff" } }
      end },
  },
}
