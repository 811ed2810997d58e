-- Requires an engine version that does not exist yet: running it must fail with exit code 2.
return hoist.pipeline.define {
  name = "future",
  version = "3.0.0",
  requires = ">=99",
  stages = { { name = "never", run = function() error("must not run") end } },
}
