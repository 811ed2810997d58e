-- Called by examples/embed/main.cpp: uses the host's own function and hoist's primitives.
local inventory = require "inventory"

local svc = inventory.lookup { name = hoist.args.service }
hoist.log.info(("service %s listens on %d (key inventory-api-key-123 is masked)"):format(svc.name, svc.port))

-- host functions and hoist primitives mix freely, concurrently too
local a, b = hoist.parallel(
  function() hoist.sleep(0.05); return svc.replicas end,
  function() return inventory.lookup { name = "web" }.port end)

local ok, err = pcall(inventory.lookup, { name = "db" })
assert(not ok and err.code == "not_found", "host errors arrive as structured errors")

return { service = svc.name, replicas = a, port = b, missing = err.message }
