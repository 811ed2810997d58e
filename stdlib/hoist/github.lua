--- hoist.github: GitHub Actions workflow commands (groups, masks, annotations) and the
--- step summary / outputs files. Outside Actions (GITHUB_ACTIONS ~= "true") they do nothing.
---
--- Workflow commands go to stdout, where the runner reads them, scrubbed of registered
--- secrets. `::add-mask::` lines are printed by the engine itself as each secret is
--- registered (bindings/host.cpp): the one place a secret is written; GitHub hides it.
local util = require "hoist.util"

local M = {}

--- True when running as a GitHub Actions step.
---@return boolean
function M.active() return os.getenv("GITHUB_ACTIONS") == "true" end

-- https://docs.github.com/actions/using-workflows/workflow-commands-for-github-actions
local function escape_data(s)
  return (tostring(s):gsub("%%", "%%25"):gsub("\r", "%%0D"):gsub("\n", "%%0A"))
end

local function escape_property(s)
  return (escape_data(s):gsub(":", "%%3A"):gsub(",", "%%2C"))
end
M.escape_data, M.escape_property = escape_data, escape_property

local function out(line)
  io.stdout:write(line, "\n")
  io.stdout:flush()
end

--- Prints a workflow command `::name props::message` (scrubbed).
---@param name string
---@param props? table<string, any>
---@param message? string
function M.command(name, props, message)
  if not M.active() then return end
  local parts = {}
  if props then
    for _, k in ipairs(util.sorted_keys(props)) do
      if props[k] ~= nil and props[k] ~= "" then
        parts[#parts + 1] = k .. "=" .. escape_property(hoist.scrub(tostring(props[k])))
      end
    end
  end
  -- scrub, then escape: GitHub un-escapes %25, %0D and %0A, so a secret holding %, CR or LF
  -- escaped first would slip past the scrubber and reappear whole
  local text = "::" .. name .. (#parts > 0 and (" " .. table.concat(parts, ",")) or "") .. "::" ..
    escape_data(hoist.scrub(tostring(message or "")))
  out(text)
end

--- Opens a collapsible group in the log.
---@param title string
function M.group(title) M.command("group", nil, title) end

--- Closes the current group.
function M.endgroup() M.command("endgroup") end

--- An annotation on the run (and on a file line when `file` is given).
---@param a {level?: "error"|"warning"|"notice", message: string, file?: string, line?: integer, title?: string}
function M.annotation(a)
  local level = a.level or "error"
  if level ~= "error" and level ~= "warning" and level ~= "notice" then
    hoist.error { code = "invalid_argument", message = "github.annotation: level must be error, warning or notice" }
  end
  M.command(level, { file = a.file, line = a.line, title = a.title }, a.message)
end

local function append_file(var, text)
  local path = os.getenv(var)
  if not M.active() or not path or path == "" then return false end
  local f = io.open(path, "a")
  if not f then return false end
  f:write(hoist.scrub(text))
  f:close()
  return true
end

--- Appends markdown to the job's step summary ($GITHUB_STEP_SUMMARY).
---@param markdown string
---@return boolean written
function M.step_summary(markdown) return append_file("GITHUB_STEP_SUMMARY", markdown .. "\n") end

--- Sets a step output ($GITHUB_OUTPUT), usable as steps.<id>.outputs.<name>.
---@param name string
---@param value string
---@return boolean written
function M.set_output(name, value)
  value = tostring(value)
  if value:find("\n") then
    local delim = "HOIST_EOF_" .. tostring(math.random(1e9))
    return append_file("GITHUB_OUTPUT", ("%s<<%s\n%s\n%s\n"):format(name, delim, value, delim))
  end
  return append_file("GITHUB_OUTPUT", ("%s=%s\n"):format(name, value))
end

--- The page of the workflow run in progress ($GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/
--- runs/$GITHUB_RUN_ID), nil outside GitHub Actions or when one of them is unset.
---@return string|nil
function M.run_url()
  local server, repo, id = os.getenv("GITHUB_SERVER_URL"), os.getenv("GITHUB_REPOSITORY"), os.getenv("GITHUB_RUN_ID")
  if not M.active() or not server or server == "" or not repo or repo == "" or not id or not id:match("^%d+$") then return nil end
  return ("%s/%s/actions/runs/%s"):format(server:gsub("/+$", ""), repo, id)
end

--- Splits an error location "file.lua:12" into file and line.
---@param where? string
---@return string? file, integer? line
function M.location(where)
  if type(where) ~= "string" then return nil end
  local file, line = where:match("^(.-):(%d+)$")
  if file then return file, tonumber(line) end
  return nil
end

return M
