--- hoist.azure.ports: the port a container's app listens on, as far as hoist can tell (the
--- image's EXPOSE and what the app's console log says), against the port the Azure service
--- sends traffic to (App Service's WEBSITES_PORT, the container group's port, the ingress
--- targetPort). A wrong port otherwise shows only as a service that waits out its start time
--- ("Empty reply from server", a revision still Processing after minutes); with this the
--- targets fail as soon as the log names another port, naming both. See docs/azure.md.
local util = require "hoist.util"

local M = {}

--- The ports an image EXPOSEs, read from its config (the local Docker engine's copy; the
--- registry client reads manifests, not config blobs): nil when the image is not here.
---@param image string
---@return integer[]|nil
function M.exposed(image)
  local ok, info = util.try(hoist.docker.inspect, { name = image, type = "image" })
  if not ok then
    if hoist.is_error(info, "cancelled") then error(info, 0) end
    return nil
  end
  if type(info) ~= "table" then return nil end
  local ports = {}
  for key in pairs((info.Config or {}).ExposedPorts or {}) do
    local p = tonumber(key:match("^(%d+)"))
    if p then ports[#ports + 1] = p end
  end
  table.sort(ports)
  return ports
end

-- Words servers use when they say where they listen ("Listening on :8080", "Uvicorn running on
-- http://0.0.0.0:8000", "Now listening on: http://[::]:8080", "Tomcat started on port(s): 8080",
-- "listening on 8080"). Lower-case: lines are compared lower-cased.
local SAYS = { "listen", "running on", "started on", "serving on", "bound to", "binding to" }

-- The port a line announces, or nil. An address's ":<port>" first, then "port <n>", then a
-- bare number right after the words.
local function announced_port(line)
  local low = line:lower()
  local at
  for _, w in ipairs(SAYS) do
    local i = low:find(w, 1, true)
    if i and (not at or i < at) then at = i end
  end
  if not at then return nil end
  local rest = low:sub(at)
  local p = rest:match("[%w%]%*]:(%d+)") or rest:match("%s:(%d+)") or rest:match("port%(?s?%)?:?%s*(%d+)")
    or rest:match("^%a[%a ]-%s+on:?%s+(%d+)%f[^%d]")
  p = tonumber(p)
  if p and p >= 1 and p <= 65535 then return p end
end

--- The ports the app's console log says it listens on (newest line last), with the line of each.
---@param text string the console log
---@return {port: integer, line: string}[]
function M.announced(text)
  local out, seen = {}, {}
  for line in (text or ""):gmatch("[^\n]+") do
    local p = announced_port(line)
    if p then
      if seen[p] then table.remove(out, seen[p]) end
      out[#out + 1] = { port = p, line = line:gsub("^%s+", ""):sub(1, 200) }
      seen = {}
      for i, a in ipairs(out) do seen[a.port] = i end
    end
  end
  return out
end

---@class hoist.azure.ports.Check
---@field port integer the port the service sends traffic to
---@field setting string what sets it, named in the advice ("WEBSITES_PORT", "container_port")
---@field waits string who waits there, e.g. "App Service waits on"
---@field image? string the image, for its EXPOSE
---@field exposed? integer[] EXPOSE when already known
---@field logs? string the app's console log
---@field expose_only? boolean judge by EXPOSE when the log says nothing (the service already found nothing answering)

--- Why traffic to `port` cannot reach the app, naming both ports: "the container listens on
--- 8080 (its log: "... listening on 8080"; EXPOSE 8080) but the container group opens 8000: set
--- container_port=8080"; nil when nothing hoist can see says another port. The console log
--- decides; EXPOSE alone only with `expose_only` (an app may listen on another port than it
--- EXPOSEs, so EXPOSE alone is no reason to fail a container that may still be starting).
---@param o hoist.azure.ports.Check
---@return string|nil message
---@return {listens?: integer, exposed?: integer[], line?: string}|nil evidence
function M.mismatch(o)
  local exposed = o.exposed or (o.image and M.exposed(o.image)) or nil
  local said = M.announced(o.logs)
  local last = said[#said]
  local listens
  for _, a in ipairs(said) do if a.port == o.port then return nil end end
  if last then
    listens = last.port
  elseif o.expose_only and exposed and #exposed > 0 then
    for _, p in ipairs(exposed) do if p == o.port then return nil end end
    listens = exposed[1]
  else
    return nil
  end
  local why = {}
  if last then why[#why + 1] = ("its log: %q"):format(last.line) end
  if exposed and #exposed > 0 then
    local listed = {}
    for i, p in ipairs(exposed) do listed[i] = tostring(p) end
    why[#why + 1] = "EXPOSE " .. table.concat(listed, " ")
  end
  return ("the container listens on %d (%s) but %s %d: set %s=%d"):format(listens, table.concat(why, "; "), o.waits,
    o.port, o.setting, listens), { listens = listens, exposed = exposed, line = last and last.line }
end

return M
