-- hoist.fs: read, atomic write (0600 when asked), mkdir -p, list, exists, remove, realpath,
-- pid alive, and its argument errors.
local t = require "hoist.test"
local fs = hoist.fs
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

local function mode_of(path)
  local r = hoist.exec { "stat", "-c", "%a", path }
  return (r.stdout:gsub("%s+$", ""))
end

t.case("write_file creates folders, replaces atomically and read_file reads it back", function()
  local dir = support.tmpdir("hoist-fs")
  local path = dir .. "/a/b/c.txt"
  fs.write_file(path, "one\0two")
  t.eq(fs.read_file(path), "one\0two")
  fs.write_file(path, "three")
  t.eq(fs.read_file(path), "three")
  t.eq(fs.list(dir .. "/a/b"), { "c.txt" }, "no temporary file is left")
  t.eq(mode_of(path) ~= "600", true)
end)

t.case("write_file with mode 0600 makes a private file, even over a public one", function()
  local dir = support.tmpdir("hoist-fs")
  local path = dir .. "/secret.env"
  fs.write_file(path, "public")
  fs.write_file(path, "TOKEN=x", { mode = "0600" })
  t.eq(mode_of(path), "600")
  fs.write_file(dir .. "/n", "x", { mode = 384 })
  t.eq(mode_of(dir .. "/n"), "600")
end)

t.case("mkdir -p, list sorted, exists, kind, remove", function()
  local dir = support.tmpdir("hoist-fs")
  t.eq(fs.mkdir(dir .. "/x/y/z"), true)
  t.eq(fs.mkdir(dir .. "/x/y/z"), false, "already there")
  fs.write_file(dir .. "/x/b", "")
  fs.write_file(dir .. "/x/a", "")
  t.eq(fs.list(dir .. "/x"), { "a", "b", "y" })
  t.eq(fs.list(dir .. "/nothing"), {})
  t.eq({ fs.exists(dir .. "/x/a"), fs.exists(dir .. "/x/y"), fs.exists(dir .. "/none") }, { true, true, false })
  t.eq({ fs.kind(dir .. "/x/a"), fs.kind(dir .. "/x/y"), fs.kind(dir .. "/none") }, { "file", "directory", nil })
  t.eq(fs.remove(dir .. "/x/a"), true)
  t.eq(fs.remove(dir .. "/x/a"), false)
  t.raises(function() fs.remove(dir .. "/x") end, "internal", "cannot remove")
  t.eq(fs.remove(dir .. "/x", { recursive = true }), true)
  t.eq(fs.exists(dir .. "/x"), false)
end)

t.case("read_file: not_found names the file; missing_ok gives nil", function()
  local dir = support.tmpdir("hoist-fs")
  t.raises(function() fs.read_file(dir .. "/none") end, "not_found", "no such file: .*/none")
  t.eq(fs.read_file(dir .. "/none", { missing_ok = true }), nil)
  t.raises(function() fs.read_file(dir) end, "invalid_argument", "is a folder")
end)

t.case("realpath and pid_alive", function()
  local me = require("hoist.native.journal").self()
  t.eq(fs.realpath(me.cwd), me.cwd)
  t.raises(function() fs.realpath("/no/such/path") end, "not_found", "/no/such/path")
  t.eq(fs.pid_alive(me.pid), true)
  t.eq(fs.pid_alive(0), false)
end)

t.cases("bad arguments name the function and the option", {
  { call = function() fs.read_file(42) end, pattern = "hoist%.fs%.read_file: path must be a string, got number" },
  { call = function() fs.write_file("/tmp/x", {}) end, pattern = "hoist%.fs%.write_file: text must be a string" },
  { call = function() fs.write_file("/tmp/x", "", { mode = "rw" }) end, pattern = "option 'mode' must be an octal string" },
  { call = function() fs.write_file("/tmp/x", "", { perms = "0600" }) end, pattern = "unknown option 'perms'" },
  { call = function() fs.write_file("", "") end, pattern = "the path is empty" },
  { call = function() fs.remove("/tmp/x", { recursive = "yes" }) end, pattern = "option 'recursive' must be a boolean" },
  { call = function() fs.pid_alive("1") end, pattern = "pid must be a number" },
}, function(row)
  t.raises(row.call, "invalid_argument", row.pattern)
end)

t.case("absolute resolves from the working folder; the path need not exist", function()
  local cwd = require("hoist.native.journal").self().cwd
  t.eq(fs.absolute("a/../b/c"), cwd .. "/b/c")
  t.eq(fs.absolute("/x/./y"), "/x/y")
end)
