--- hoist.fs: the file and process utilities stdlib and pipelines need, in one place: read a
--- file, write one atomically (optionally private, mode 0600), mkdir -p, list a folder, test,
--- remove, resolve a path, ask whether a pid is alive. Paths are plain strings; nothing here
--- runs a shell. Reference: docs/fs.md.
local native = require "hoist.native.fs"
local util = require "hoist.util"

local M = {}

local function path_arg(fname, path)
  if type(path) ~= "string" then
    util.fail("invalid_argument", ("%s: path must be a string, got %s"):format(fname, type(path)))
  end
  return path
end

-- A mode as a number (384) or an octal string ("0600", "600").
local function mode_of(fname, mode, default)
  if mode == nil then return default end
  if type(mode) == "string" and mode:match("^0?[0-7][0-7][0-7]$") then return tonumber(mode, 8) end
  if type(mode) == "number" and mode == math.floor(mode) and mode >= 0 and mode <= 511 then return mode end
  util.fail("invalid_argument", ("%s: option 'mode' must be an octal string like \"0600\" or a number from 0 to 511, got %s"):format(
    fname, tostring(mode)))
end

--- The whole file. Raises not_found when it does not exist, unless `missing_ok` (then nil).
---@param path string
---@param opts? {missing_ok?: boolean}
---@return string|nil
function M.read_file(path, opts)
  local o = util.check_opts("hoist.fs.read_file", opts, { missing_ok = "boolean" })
  local ok, text = pcall(native.read_file, path_arg("hoist.fs.read_file", path))
  if ok then return text end
  if o.missing_ok and hoist.is_error(text, "not_found") then return nil end
  error(text, 0)
end

--- Writes the whole file atomically and durably: a temporary sibling, fsync, rename, so a
--- reader sees the old content or the new, never a part. Missing folders are created.
--- `mode` = "0600" for a file that holds secrets (default "0644", before the umask).
---@param path string
---@param text string
---@param opts? {mode?: string|integer}
function M.write_file(path, text, opts)
  local o = util.check_opts("hoist.fs.write_file", opts, { mode = "string|integer" })
  if type(text) ~= "string" then
    util.fail("invalid_argument", ("hoist.fs.write_file: text must be a string, got %s"):format(type(text)))
  end
  native.write_file(path_arg("hoist.fs.write_file", path), text, mode_of("hoist.fs.write_file", o.mode, 420))
end

--- Creates the folder and its parents (mkdir -p). Returns true when it created it.
---@param path string
---@param opts? {mode?: string|integer} of the folders created (default "0755")
---@return boolean
function M.mkdir(path, opts)
  local o = util.check_opts("hoist.fs.mkdir", opts, { mode = "string|integer" })
  return native.mkdir(path_arg("hoist.fs.mkdir", path), mode_of("hoist.fs.mkdir", o.mode, 493))
end

--- The names in a folder, sorted ({} when the folder does not exist).
---@param path string
---@return string[]
function M.list(path) return native.list(path_arg("hoist.fs.list", path)) end

--- True when something exists at `path` (a file or a folder; `kind` says which).
---@param path string
---@return boolean
function M.exists(path) return native.kind(path_arg("hoist.fs.exists", path)) ~= nil end

--- "file", "directory", "other" or nil when nothing is there.
---@param path string
---@return string|nil
function M.kind(path) return native.kind(path_arg("hoist.fs.kind", path)) end

--- Removes a file or an empty folder (`recursive`: a folder and all it holds). Returns false
--- when there was nothing to remove.
---@param path string
---@param opts? {recursive?: boolean}
---@return boolean
function M.remove(path, opts)
  local o = util.check_opts("hoist.fs.remove", opts, { recursive = "boolean" })
  return native.remove(path_arg("hoist.fs.remove", path), o.recursive == true)
end

--- The absolute path with symlinks resolved; raises not_found when it does not exist.
---@param path string
---@return string
function M.realpath(path) return native.realpath(path_arg("hoist.fs.realpath", path)) end

--- The absolute path from the working folder, "." and ".." resolved (realpath -m): the path
--- need not exist.
---@param path string
---@return string
function M.absolute(path) return native.absolute(path_arg("hoist.fs.absolute", path)) end

--- True when a process with this pid exists and has not exited (a zombie counts as gone).
---@param pid integer
---@return boolean
function M.pid_alive(pid)
  if type(pid) ~= "number" then
    util.fail("invalid_argument", ("hoist.fs.pid_alive: pid must be a number, got %s"):format(type(pid)))
  end
  return native.pid_alive(pid)
end

return M
