--- hoist.azure_pipelines: Azure Pipelines logging commands (`##vso[...]`, `##[group]`), the
--- same calls as hoist.github for the other CI runner hoist knows; hoist.ci picks one.
--- Outside Azure Pipelines (TF_BUILD ~= "True") they do nothing.
---
--- Commands go to stdout, where the agent reads them, scrubbed of registered secrets. The
--- `##vso[task.setsecret]` lines are printed by the engine itself as each secret is
--- registered (bindings/host.cpp), as GitHub's `::add-mask::` are.
local util = require "hoist.util"

local M = {}

--- True when running as an Azure Pipelines step (the agent sets TF_BUILD=True).
---@return boolean
function M.active()
  local v = os.getenv("TF_BUILD")
  return v == "True" or v == "true"
end

-- The agent's escaping of a command's properties and data: '%' first (as %AZP25, the agent's
-- own spelling: a bare %25 is left alone by agents without DECODE_PERCENTS), then the
-- characters that end a property, a command or a line.
local function escape(s)
  return (tostring(s):gsub("%%", "%%AZP25"):gsub(";", "%%3B"):gsub("\r", "%%0D"):gsub("\n", "%%0A"):gsub("%]", "%%5D"))
end
M.escape = escape

local function out(line)
  io.stdout:write(line, "\n")
  io.stdout:flush()
end

--- Prints a logging command `##vso[area.action k=v;...]data` (scrubbed, then escaped: the agent
--- un-escapes, so a secret escaped first would slip past the scrubber).
---@param name string e.g. "task.logissue"
---@param props? table<string, any>|{[1]: string, [2]: any}[] a map (sorted) or a list of {name, value}
---@param data? string
function M.command(name, props, data)
  if not M.active() then return end
  local parts = {}
  local pairs_in_order = {}  -- a list of {name, value} keeps its order; a map is sorted
  if props and props[1] then
    pairs_in_order = props
  elseif props then
    for _, k in ipairs(util.sorted_keys(props)) do pairs_in_order[#pairs_in_order + 1] = { k, props[k] } end
  end
  for _, p in ipairs(pairs_in_order) do
    if p[2] ~= nil and p[2] ~= "" then parts[#parts + 1] = p[1] .. "=" .. escape(hoist.scrub(tostring(p[2]))) .. ";" end
  end
  out("##vso[" .. name .. (#parts > 0 and (" " .. table.concat(parts)) or "") .. "]" .. escape(hoist.scrub(tostring(data or ""))))
end

--- Opens a collapsible group in the log (`##[group]`).
---@param title string
function M.group(title)
  if M.active() then out("##[group]" .. hoist.scrub(tostring(title)):gsub("[\r\n]", " ")) end
end

--- Closes the current group.
function M.endgroup()
  if M.active() then out("##[endgroup]") end
end

--- An issue on the build (`##vso[task.logissue]`), on a file line when `file` is given. The
--- agent knows errors and warnings: a notice is a warning there.
---@param a {level?: "error"|"warning"|"notice", message: string, file?: string, line?: integer, title?: string}
function M.annotation(a)
  local level = a.level or "error"
  if level ~= "error" and level ~= "warning" and level ~= "notice" then
    hoist.error { code = "invalid_argument", message = "azure_pipelines.annotation: level must be error, warning or notice" }
  end
  local text = a.title and (a.title .. ": " .. tostring(a.message)) or tostring(a.message)
  M.command("task.logissue", { type = level == "error" and "error" or "warning", sourcepath = a.file,
                               linenumber = a.line }, text)
end

local summaries = 0

--- The build's results page: $SYSTEM_TEAMFOUNDATIONCOLLECTIONURI$SYSTEM_TEAMPROJECT/_build/results?buildId=$BUILD_BUILDID,
--- or nil outside Azure Pipelines or without those variables.
---@return string|nil
function M.run_url()
  local base, project, id = os.getenv("SYSTEM_TEAMFOUNDATIONCOLLECTIONURI"), os.getenv("SYSTEM_TEAMPROJECT"),
    os.getenv("BUILD_BUILDID")
  if not M.active() or not base or base == "" or not project or project == "" or not id or not id:match("^%d+$") then
    return nil
  end
  return ("%s/%s/_build/results?buildId=%s"):format(base:gsub("/+$", ""), require("hoist.azure").encode(project), id)
end

--- Adds markdown to the build summary: written to a file in the agent's temp folder
--- ($AGENT_TEMPDIRECTORY) and attached with `##vso[task.uploadsummary]`.
---@param markdown string
---@return boolean written
function M.step_summary(markdown)
  if not M.active() then return false end
  local dir = os.getenv("AGENT_TEMPDIRECTORY")
  if not dir or dir == "" then return false end
  summaries = summaries + 1
  local path = ("%s/hoist-summary-%d-%d.md"):format(dir, require("hoist.native.journal").self().pid, summaries)
  local f = io.open(path, "w")
  if not f then return false end
  f:write(hoist.scrub(markdown), "\n")
  f:close()
  M.command("task.uploadsummary", nil, path)
  return true
end

--- Sets an output variable of the step (`##vso[task.setvariable variable=NAME;isOutput=true]`),
--- usable as $(STEP.NAME) in the job and dependencies.JOB.outputs['STEP.NAME'] after it.
---@param name string
---@param value string
---@return boolean written
function M.set_output(name, value)
  if not M.active() then return false end
  M.command("task.setvariable", { { "variable", name }, { "isOutput", "true" } }, tostring(value))
  return true
end

return M
