-- The packages (cmake/package.cmake): CPack builds the .deb and the .tar.gz of the `hoist`
-- component (the command) of the build this test runs from, each with its .sha256; the .tar.gz
-- installed into a temporary prefix runs `hoist version`, a pipeline's --help and a script; the
-- .deb's control fields name the version and the runtime libraries. The libhoist-dev
-- component is left out here (compressing libhoist.a costs most of a minute): its files are
-- the install rules tests/embed/run.sh installs and builds against. As root (CI), the .deb is also installed for real with
-- dpkg into a scratch root whose package database is a copy of this machine's, so dpkg checks
-- its Depends against what is installed and nothing of the machine changes.
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

local build = support.hoist_bin():match("^(.*)/[^/]*$")
local version = hoist.version
local arch = hoist.exec({ "uname", "-m", check = true }).stdout:match("%S+")
local name = ("hoist-%s-linux-%s"):format(version, arch)

local function run(argv, opts)
  opts = opts or {}
  argv.timeout = opts.timeout or 300
  argv.cwd = opts.cwd
  argv.env = opts.env
  local r = hoist.exec(argv)
  t.eq(r.code, 0, table.concat(argv, " ") .. ": " .. r.stderr .. r.stdout)
  return r
end

-- One CPack run for the whole file: packages of the build this test runs.
local out = support.tmpdir("hoist-package")
t.ok(support.exists(build .. "/CPackConfig.cmake"), build .. " is a configured build folder (CPackConfig.cmake)")
run({ "cpack", "--config", build .. "/CPackConfig.cmake", "-B", out, "-D", "CPACK_COMPONENTS_ALL=hoist" },
    { cwd = build, timeout = 600 })

t.case("cpack writes a .deb and a .tar.gz named by version and machine, each with its sha256", function()
  for _, base in ipairs { name } do
    for _, ext in ipairs { ".deb", ".tar.gz" } do
      local file = base .. ext
      t.ok(support.exists(out .. "/" .. file), file)
      t.match(support.must_read(out .. "/" .. file .. ".sha256"), "^%x+%s+" .. file:gsub("%p", "%%%0") .. "\n$")
      run({ "sha256sum", "-c", file .. ".sha256" }, { cwd = out })
    end
  end
end)

t.case("the .tar.gz installed in a temporary prefix runs hoist, its bundled pipelines and a script", function()
  local prefix = support.tmpdir("hoist-prefix")
  run { "tar", "-xzf", out .. "/" .. name .. ".tar.gz", "-C", prefix }
  local root = prefix .. "/" .. name
  local bin = root .. "/bin/hoist"
  local env = { HOIST_LUA_PATH = "", HOIST_BIN = "", NO_COLOR = "1" }
  t.match(run({ bin, "version" }, { env = env }).stdout, "^hoist " .. version:gsub("%p", "%%%0") .. "\n")
  t.match(run({ bin, "--version" }, { env = env }).stdout, "^hoist " .. version:gsub("%p", "%%%0"))
  t.match(run({ bin, "run", "demo@2", "--help" }, { env = env }).stdout, "^demo 2%.%d+%.%d+")
  support.write(prefix .. "/hello.lua", 'print("hello from " .. hoist.version)\n')
  t.match(run({ bin, "run", prefix .. "/hello.lua", "--state-dir", prefix .. "/state" }, { env = env, cwd = prefix }).stdout,
    "hello from " .. version:gsub("%p", "%%%0"))
  -- the binary is stripped; its completions and man page beside it; libhoist is the other package's
  t.no_match(run({ "file", "-L", bin }).stdout, "not stripped")
  for _, f in ipairs { "share/bash-completion/completions/hoist", "share/zsh/vendor-completions/_hoist" } do
    t.ok(support.exists(root .. "/" .. f), f)
  end
  t.ok(not support.exists(root .. "/lib"), "no libraries in the command's package")
  -- the man page is there when the build found help2man (cmake/editor.cmake)
  if (support.read(build .. "/CMakeCache.txt") or ""):match("\nHOIST_HELP2MAN:FILEPATH=/") then
    t.match(support.must_read(root .. "/share/man/man1/hoist.1"), "%.SH COMMANDS")
  end
end)

local function control(deb, field)
  return (run({ "dpkg-deb", "-f", out .. "/" .. deb, field }).stdout:gsub("\n$", ""))
end

t.case("the .deb's control fields: name, version, architecture, maintainer, the runtime libraries", function()
  local deb = name .. ".deb"
  local info = run({ "dpkg-deb", "-I", out .. "/" .. deb }).stdout
  t.match(info, "\n Package: hoist\n")
  t.eq(control(deb, "Version"), version)
  t.eq(control(deb, "Architecture"), run({ "dpkg", "--print-architecture" }).stdout:match("%S+"))
  t.match(control(deb, "Maintainer"), "<.+@.+>")
  t.match(control(deb, "Description"), "^Build, scan, push, deploy and verify containers")
  local depends = control(deb, "Depends")
  -- what the binary links (ldd build/hoist): each by its Debian package
  for _, lib in ipairs { "libc6", "libcurl4", "libluajit", "libyaml%-cpp0", "libssl3", "libstdc%+%+6", "libgcc%-s1" } do
    t.match(depends, lib, "Depends names " .. lib .. ": " .. depends)
  end
  t.match(control(deb, "Suggests"), "docker%.io")
  local files = run({ "dpkg-deb", "-c", out .. "/" .. deb }).stdout
  for _, f in ipairs { "%./usr/bin/hoist\n", "%./usr/share/bash%-completion/completions/hoist\n" } do t.match(files, f) end
  t.no_match(files, "libhoist", "libhoist is the libhoist-dev package's")
end)

t.case("as root: dpkg installs the .deb into a scratch root, its Depends met by this machine", function()
  if hoist.exec({ "id", "-u" }).stdout:match("%d+") ~= "0" then
    t.skip("dpkg -i needs root (CI runs as root); the control fields are checked above without it")
  end
  local root = support.tmpdir("hoist-dpkg-root")
  local admin = root .. "/var/lib/dpkg"
  for _, d in ipairs { "updates", "info", "triggers" } do hoist.fs.mkdir(admin .. "/" .. d) end
  run { "cp", "/var/lib/dpkg/status", admin .. "/status" }
  -- --root chroots for maintainer scripts: the package has none; its files land under root
  local r = run({ "dpkg", "--root=" .. root, "--force-script-chrootless", "--no-triggers", "-i", out .. "/" .. name .. ".deb" })
  t.match(r.stdout, "Setting up hoist %(" .. version:gsub("%p", "%%%0") .. "%)")
  t.match(run({ root .. "/usr/bin/hoist", "version" }, { env = { HOIST_LUA_PATH = "" } }).stdout, "^hoist ")
  t.match(run({ "dpkg", "--root=" .. root, "-s", "hoist" }).stdout, "\nStatus: install ok installed\n")
end)
