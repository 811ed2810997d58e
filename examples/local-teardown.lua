-- Takes down a service the `local` target deployed (its proxy and its containers).
--   hoist run examples/local-teardown.lua --set service=app
local service = hoist.args.service or "app"
local r = require("hoist.targets.local").remove { service = service }
hoist.log.info(("%s: removed %d container(s)%s"):format(service, #r.removed,
  r.proxy_stopped and ", stopped its proxy" or ""))
return r
