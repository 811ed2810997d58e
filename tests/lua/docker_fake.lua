-- A fake docker for the hoist.docker unit tests (loaded by them; not a test file).
local cli = require "hoist.docker.cli"
local build = require "hoist.docker.build"
local health = require "hoist.docker.health"

local F = {}

F.GIT = { sha = "0123456789abcdef0123456789abcdef01234567", short_sha = "0123456", dirty = false,
          remote_url = "https://github.com/acme/app" }

function F.has(list, value)
  for _, v in ipairs(list) do if v == value then return true end end
  return false
end

-- The value after `flag` in argv.
function F.after(argv, flag)
  for i, v in ipairs(argv) do if v == flag then return argv[i + 1] end end
end

-- Runs fn(calls) with a fake docker: `script` is a list of {match = pattern on the argv after
-- "docker", code=, stdout=, stderr=, effect = fn(spec), reply = fn(spec, n) -> {code=, stdout=,
-- stderr=} for the n-th matching call}; the first matching entry answers.
function F.with_docker(script, fn, opts)
  local calls = {}
  cli.runner = function(spec)
    calls[#calls + 1] = spec
    local text = table.concat(spec, " ", 2)
    for _, r in ipairs(script) do
      if text:find(r.match) then
        if r.effect then r.effect(spec) end
        r.n = (r.n or 0) + 1
        if r.reply then
          local a = r.reply(spec, r.n)
          return { code = a.code or 0, signal = 0, stdout = a.stdout or "", stderr = a.stderr or "",
                   duration = 0.01, timed_out = false }
        end
        return { code = r.code or 0, signal = 0, stdout = r.stdout or "", stderr = r.stderr or "",
                 duration = 0.01, timed_out = false }
      end
    end
    error("unexpected docker call: " .. text, 0)
  end
  local core = require "hoist.native.core"
  local previous = core.set_dry_run(opts and opts.dry_run or false)
  build.reset_detection()
  local ok, err = pcall(fn, calls)
  cli.runner, health.http = nil, nil
  core.set_dry_run(previous)
  build.reset_detection()
  if not ok then error(err, 0) end
end

F.NO_BUILDX = { match = "^buildx version", code = 1, stderr = "docker: unknown command: docker buildx" }
F.BUILDX = { match = "^buildx version", stdout = "github.com/docker/buildx v0.12.1 30feaa1\n" }
function F.built(id)
  return { match = "^build ", effect = function(spec)
    local f = assert(io.open(F.after(spec, "--iidfile"), "w"))
    f:write(id or "sha256:" .. ("ab"):rep(32))
    f:close()
  end }
end

return F
