--- hoist.log: messages to the terminal, the JSON log and the run's events.jsonl, with every
--- registered secret masked.
local core = require "hoist.native.core"

local M = {}

local function emit(level, message, fields)
  if type(message) ~= "string" then message = tostring(message) end
  core.log(level, message, type(fields) == "table" and fields or nil)
end

---@param message string
---@param fields? table structured data kept in the JSON log and events
function M.debug(message, fields) emit("debug", message, fields) end
---@param message string
---@param fields? table
function M.info(message, fields) emit("info", message, fields) end
---@param message string
---@param fields? table
function M.warn(message, fields) emit("warn", message, fields) end
---@param message string
---@param fields? table
function M.error(message, fields) emit("error", message, fields) end

--- Emits a structured event (`kind` such as "stage.start") for machines and reports.
---@param kind string
---@param message string
---@param fields? table
---@param level? string
function M.event(kind, message, fields, level)
  core.log(level or "info", message, type(fields) == "table" and fields or nil, kind)
end

return M
