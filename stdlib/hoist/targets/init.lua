--- hoist.targets: where a pipeline deploys. Each target is a module
--- `hoist.targets.<name>` with `deploy(opts)` and named rollback actions; this module picks
--- one by name and says plainly when a target is planned but not shipped yet.
local M = {}

--- Every target name a pipeline may be asked for, and whether this engine ships it.
---@type table<string, boolean>
M.known = {
  ["local"] = true,     -- the local Docker engine behind a stable front (hoist proxy)
  aci = false,          -- Azure Container Instances
  appservice = false,   -- Azure App Service (Web App for Containers)
  containerapp = false, -- Azure Container Apps
  aks = false,          -- Azure Kubernetes Service
}

--- Names of the targets, sorted.
---@param available_only? boolean only those this engine ships
---@return string[]
function M.names(available_only)
  local out = {}
  for name, shipped in pairs(M.known) do
    if shipped or not available_only then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

--- The module of target `name`. Raises invalid_argument (exit code 2) naming it when it is
--- unknown, or known but not available in this version.
---@param name string
---@param where? string who asks, for the message (e.g. "container@1")
---@return table
function M.get(name, where)
  local prefix = where and (where .. ": ") or ""
  local shipped = M.known[name]
  if shipped == nil then
    hoist.error { code = "invalid_argument",
      message = ("%sunknown target %q (targets: %s)"):format(prefix, tostring(name), table.concat(M.names(), ", ")),
      details = { exit_code = 2, target = name } }
  end
  if not shipped then
    hoist.error { code = "invalid_argument",
      message = ("%starget %q is not available in this version (available: %s)"):format(prefix, name,
        table.concat(M.names(true), ", ")),
      details = { exit_code = 2, target = name } }
  end
  return require("hoist.targets." .. name)
end

return M
