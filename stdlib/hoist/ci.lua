--- hoist.ci: the CI runner hoist runs in, one interface over its providers: GitHub Actions
--- (hoist.github) and Azure Pipelines (hoist.azure_pipelines). The pipeline runtime writes
--- groups, the failure annotation, the summary and the run's outputs through it; outside CI
--- every call does nothing. Secret masks are the engine's (bindings/host.cpp), for the same two.
local github = require "hoist.github"
local azure_pipelines = require "hoist.azure_pipelines"

local M = {}

-- In the order they are detected: each knows its own variable.
local PROVIDERS = { { name = "github", module = github }, { name = "azure_pipelines", module = azure_pipelines } }

--- The provider of this run: "github", "azure_pipelines", or nil outside CI.
---@return string? name, table? module
function M.provider()
  for _, p in ipairs(PROVIDERS) do
    if p.module.active() then return p.name, p.module end
  end
  return nil
end

--- True when running in a CI runner hoist knows.
---@return boolean
function M.active() return M.provider() ~= nil end

local function call(fn, ...)
  local _, mod = M.provider()
  if mod then return mod[fn](...) end
  return false
end

--- Opens a collapsible group in the CI log.
---@param title string
function M.group(title) call("group", title) end

--- Closes the current group.
function M.endgroup() call("endgroup") end

--- An error, warning or notice on the run (and on a file line when `file` is given).
---@param a {level?: "error"|"warning"|"notice", message: string, file?: string, line?: integer, title?: string}
function M.annotation(a) call("annotation", a) end

--- Adds markdown to the run's summary page.
---@param markdown string
---@return boolean written
function M.summary(markdown) return call("step_summary", markdown) == true end

--- The page of this CI run (a GitHub Actions run, an Azure Pipelines build), or nil.
---@return string|nil
function M.run_url()
  local _, mod = M.provider()
  return mod and mod.run_url and mod.run_url() or nil
end

--- Sets a step output.
---@param name string
---@param value string
---@return boolean written
function M.set_output(name, value) return call("set_output", name, value) == true end

-- Output names: letters, digits, '_' and '-' (both runners accept them; Azure's variables
-- take '.', GitHub's expressions would read it as a property).
local function output_name(s) return (tostring(s):gsub("[^%w_%-]", "_")) end

--- The step outputs of a pipeline result: run_id, status and run_dir, then every scalar
--- output of every stage as STAGE_KEY, and the last succeeded stage's scalars under their
--- own names (container@1's `done`: image, digest, url, service, sarif).
---@param result hoist.PipelineResult
---@return table<string, string>
function M.outputs(result)
  local out = { run_id = result.run, status = result.status, run_dir = result.dir }
  local last
  for _, st in ipairs(result.stages or {}) do
    local o = result.outputs and result.outputs[st.name]
    if type(o) == "table" then
      for k, v in pairs(o) do
        local kind = type(v)
        if kind == "string" or kind == "number" or kind == "boolean" then
          out[output_name(st.name .. "_" .. k)] = tostring(v)
        end
      end
      if st.status == "succeeded" then last = o end
    end
  end
  for k, v in pairs(last or {}) do
    local kind = type(v)
    if (kind == "string" or kind == "number" or kind == "boolean") and out[output_name(k)] == nil then
      out[output_name(k)] = tostring(v)
    end
  end
  return out
end

--- Everything a finished pipeline run tells the CI runner: the failure annotation (its file
--- relative to the workspace), the summary markdown, the outputs, and all of them as one
--- JSON object (`outputs_json`).
--- Internal: for hoist.pipeline.report.
---@param result hoist.PipelineResult
---@param markdown string
function M.finish(result, markdown)
  if not M.active() then return end
  if result.error then
    local file, line = github.location(result.error.where)
    local cwd = require("hoist.native.journal").self().cwd .. "/"
    if file and file:sub(1, #cwd) == cwd then file = file:sub(#cwd + 1) end
    if file then file = file:gsub("^%./", "") end
    M.annotation { level = "error", file = file, line = line,
                   title = ("%s %s: stage %s failed"):format(result.pipeline, result.version,
                                                            result.error.details and result.error.details.stage or "?"),
                   message = ("%s: %s"):format(result.error.code, result.error.message) }
  end
  M.summary(markdown)
  local outputs = M.outputs(result)
  local names = {}
  for k in pairs(outputs) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do M.set_output(k, outputs[k]) end
  M.set_output("outputs_json", require("hoist.json").encode(outputs))
end

return M
