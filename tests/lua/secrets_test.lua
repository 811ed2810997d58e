-- "hoist never prints a secret": a script with known secrets writes each of them, in every
-- encoding the scrubber supports, through every channel a script has (print, io.write,
-- io.stdout/io.stderr:write, hoist.log with fields, a child's streamed output, exec argv, a
-- GitHub annotation, an error); then stdout, stderr, events.jsonl, the step summary and
-- `hoist report` are scanned for every encoding of every secret. Runs the real executable.
local t = require "hoist.test"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")

local SECRETS = {
  "tok'en%va\"l\\ue/with space&<x>",   -- quote, percent, backslash, slash, space, HTML
  "gh%secret\r\nsecond-line-9",         -- what GitHub's workflow-command escaping changes
  "plain-Secret-Value-42",
}

---------------------------------------------------------------- encodings, written again here

local function hex(s, fmt) return (s:gsub(".", function(c) return fmt:format(c:byte()) end)) end

local function url(s, lower, plus, keep_slash)
  return (s:gsub("[^%w%-_%.~]", function(c)
    if plus and c == " " then return "+" end
    if keep_slash and c == "/" then return c end
    return (lower and "%%%02x" or "%%%02X"):format(c:byte())
  end))
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for k = 3, 0, -1 do
      local v = math.floor(n / 64 ^ k) % 64
      chars[#chars + 1] = B64:sub(v + 1, v + 1)
    end
    if not b then chars[3], chars[4] = "=", "=" elseif not c then chars[4] = "=" end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

local JSON_SHORT = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function json_short(s) return (s:gsub('[%c"\\]', function(c) return JSON_SHORT[c] or ("\\u%04x"):format(c:byte()) end)) end
local function json_u(s, fmt) return (s:gsub("[%c\"\\<>&']", function(c) return fmt:format(c:byte()) end)) end

-- The encodings a script may write (all registered by hoist.secret).
local function emitted_forms(s)
  local forms = { s, base64(s), hex(s, "%02x"), hex(s, "%02X"), json_short(s), json_u(s, "\\u%04x"), json_u(s, "\\u%04X") }
  for _, lower in ipairs { false, true } do
    for _, plus in ipairs { false, true } do
      for _, keep in ipairs { false, true } do forms[#forms + 1] = url(s, lower, plus, keep) end
    end
  end
  return forms
end

-- What is looked for in the output: every form above, plus the forms hoist's own quoting and
-- escaping would make if it escaped before scrubbing (shell quotes, workflow commands).
local function scanned_forms(s)
  local forms = emitted_forms(s)
  forms[#forms + 1] = s:gsub("'", "'\\''")
  forms[#forms + 1] = s:gsub("%%", "%%25"):gsub("\r", "%%0D"):gsub("\n", "%%0A")
  for line in s:gmatch("[^\r\n]+") do
    if #line >= 8 then forms[#forms + 1] = line end
  end
  return forms
end

local function leaks(where, text)
  local found = {}
  for si, s in ipairs(SECRETS) do
    for fi, form in ipairs(scanned_forms(s)) do
      if text:find(form, 1, true) then found[#found + 1] = ("%s: secret %d, form %d (%q)"):format(where, si, fi, form) end
    end
  end
  return found
end

---------------------------------------------------------------- the script

local SCRIPT = [[
local forms = hoist.json.decode(os.getenv("SECRET_FORMS"))
for _, s in ipairs(hoist.json.decode(os.getenv("SECRET_VALUES"))) do hoist.secret(s) end
local github = require "hoist.github"
for _, f in ipairs(forms) do
  print("print", f)
  io.write("io.write ", f, "\n")
  io.stdout:write("stdout ", f, "\n")
  io.stderr:write("stderr ", f, "\n")
  hoist.log.info("log " .. f, { field = f, list = { f } })
  hoist.log.warn("warn " .. f)
  hoist.exec { "printf", "%s\n", f, stream = true }
  local tmp = os.tmpname()  -- a file is not scrubbed: the shell prints it
  local fh = assert(io.open(tmp, "wb")); fh:write(f, "\n"); fh:close()
  os.execute("printf 'os.execute '; cat '" .. tmp .. "'; cat '" .. tmp .. "' >&2")
  os.remove(tmp)
  github.annotation { message = "annotation " .. f, title = f }
  github.step_summary("summary " .. f)
end
hoist.error { code = "tool_failed", message = "failed with " .. forms[1], details = { form = forms[2] } }
]]

t.cases("no secret leaves hoist in any supported encoding", {
  { name = "text log", format = "text" },
  { name = "JSON log", format = "json" },
}, function(row)
  local dir = support.tmpdir("hoist-secrets")
  local script = dir .. "/leak.lua"
  support.write(script, SCRIPT)
  local forms = {}
  for _, s in ipairs(SECRETS) do
    for _, f in ipairs(emitted_forms(s)) do forms[#forms + 1] = f end
  end
  local summary = dir .. "/summary.md"
  local env = {
    NO_COLOR = "1", GITHUB_ACTIONS = "true", GITHUB_STEP_SUMMARY = summary,
    SECRET_FORMS = hoist.json.encode(forms), SECRET_VALUES = hoist.json.encode(SECRETS),
  }
  local r = support.run_hoist({ "run", script, "--state-dir", dir .. "/state", "--log-format", row.format,
    "--log-level", "debug" }, { env = env, timeout = 120 })
  t.eq(r.code, 1, r.stderr)
  t.match(r.stderr, "failed with %*%*%*")
  -- ::add-mask:: is the one line meant to carry the value: GitHub hides it from then on
  local stdout = r.stdout:gsub("::add%-mask::[^\n]*\n", "")
  local found = {}
  local function scan(where, text)
    for _, f in ipairs(leaks(where, text or "")) do found[#found + 1] = f end
  end
  scan("stdout", stdout)
  scan("stderr", r.stderr)
  scan("step summary", support.read(summary))
  local run = hoist.exec({ "ls", dir .. "/state/runs", check = true }).stdout:match("%S+")
  scan("events.jsonl", support.must_read(dir .. "/state/runs/" .. run .. "/events.jsonl"))
  local report = support.run_hoist({ "report", run, "--state-dir", dir .. "/state" }, { env = { NO_COLOR = "1" } })
  scan("hoist report", report.stdout .. report.stderr)
  t.eq(found, {}, "leaks")
  t.match(stdout, "print\t%*%*%*")
  t.match(stdout, "::error title=%*%*%*::annotation %*%*%*")
end)

t.case("os.execute: the shell's output is scrubbed, even written in pieces; its status is system()'s", function()
  local dir = support.tmpdir("hoist-secrets")
  local script = dir .. "/exec.lua"
  support.write(script, [[
hoist.secret("os-exec-secret-9876")
io.write("before\n")
local status = os.execute("printf 'out os-exec-'; sleep 0.2; printf 'secret-9876 end\\n'; echo 'err os-exec-secret-9876' >&2; exit 3")
print("status", status)
print("killed", os.execute("kill -9 $$"))
print("shell", os.execute() ~= 0)
]])
  local r = support.run_hoist({ "run", script, "--state-dir", dir .. "/state" }, { env = { NO_COLOR = "1", GITHUB_ACTIONS = "false" } })
  t.eq(r.code, 0, r.stderr)
  t.no_match(r.stdout .. r.stderr, "secret-9876")
  t.match(r.stdout, "^before\nout %*%*%* end\nstatus\t768\nkilled\t9\nshell\ttrue\n$")
  t.match(r.stderr, "err %*%*%*")
end)

t.case("hoist.secret refuses a value too short to mask", function()
  t.raises(function() hoist.secret("abc") end, "invalid_argument", "at least 4 bytes long to be masked; this one has 3")
end)

-- A typo in HOIST_SECRET_ENV (NAME:value for NAME=value) is a usage error that names
-- neither value nor pair; nothing else shows the value either.
t.case("a malformed secret map from the environment is reported without its value", function()
  local dir = support.tmpdir("hoist-secrets")
  local pipeline = dir .. "/p.lua"
  support.write(pipeline, [[
return hoist.pipeline.define {
  name = "secret-env", version = "0.1.0",
  params = { secret_env = { type = "map", secret = true, env = "HOIST_SECRET_ENV" } },
  stages = { { name = "noop", run = function() end } },
}
]])
  local value = "typo-secret-value-31337"
  local r = support.run_hoist({ "run", pipeline, "--state-dir", dir .. "/state" },
    { env = { NO_COLOR = "1", GITHUB_ACTIONS = "false", HOIST_SECRET_ENV = "OK=fine-value-1,APP_TOKEN:" .. value } })
  t.eq(r.code, 2, r.stderr)
  t.match(r.stderr, "secret_env: expected a map .*item 2 has no '='")
  t.no_match(r.stdout .. r.stderr, value)
  local events = hoist.exec { "sh", "-c", "cat \"$1\"/runs/*/events.jsonl 2>/dev/null", "sh", dir .. "/state" }
  t.no_match(events.stdout, value)
end)
