-- Takes down a service the `local` target deployed: its proxy, its containers and the 0600
-- files that kept their environment (secrets) for a rollback.
--   hoist run examples/local-teardown.lua --set service=app [--dry-run]
local service = hoist.args.service or "app"
local r = require("hoist.targets.local").remove { service = service }
local verb = r.planned and "would remove" or "removed"
local proxy = r.proxy_stopped and (r.planned and ", would stop its proxy" or ", stopped its proxy") or ""
hoist.log.info(("%s: %s %d container(s) and %d environment file(s)%s"):format(service, verb, #r.removed, #r.files, proxy))
return r
