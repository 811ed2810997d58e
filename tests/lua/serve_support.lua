-- Helpers of the hoist serve tests: a `hoist serve` in a child process on an ephemeral port
-- of 127.0.0.1, signed deliveries, and the server's queue read back.
local serve = require "hoist.serve"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

local M = {}

-- Starts `hoist serve --config <config> --state-dir <state>` with `env` (added to this
-- process's) and the extra flags; returns {task, pid, url} once it listens.
---@param o {config: string, state: string, env?: table, args?: string[], fd_limit?: integer}
function M.start(o)
  local listening = o.state .. "/serve/listening.json"
  os.remove(listening)
  local pidfile = o.state .. ".pid"
  os.remove(pidfile)
  local limit = o.fd_limit and ("ulimit -n " .. math.floor(o.fd_limit) .. "; ") or ""
  local argv = { "sh", "-c", limit .. 'echo $$ > "$1"; shift; exec "$@"', "sh", pidfile, support.hoist_bin(), "serve",
                 "--config", o.config, "--listen", "127.0.0.1:0", "--state-dir", o.state, "--no-color" }
  for _, a in ipairs(o.args or {}) do argv[#argv + 1] = a end
  argv.env, argv.timeout = o.env, 900
  local task = hoist.spawn(function() return hoist.exec(argv) end)
  local info
  for _ = 1, 400 do
    local text, pid = support.read(listening), support.read(pidfile)
    if text and pid then
      info = hoist.json.decode(text)
      if info.pid == tonumber(pid:match("%d+")) then break end
      info = nil
    end
    if task:status() ~= "running" then break end
    hoist.sleep(0.025)
  end
  if not info then error("hoist serve did not start:\n" .. tostring(task:status() ~= "running" and task:wait().stderr), 0) end
  return { task = task, pid = info.pid, url = info.url }
end

-- Sends `signal` (TERM) and returns the server's exec result (code, stderr, ...).
function M.stop(server, signal)
  hoist.exec { "kill", "-" .. (signal or "TERM"), tostring(server.pid) }
  return server.task:wait()
end

-- POSTs `body` to the server, signed as `source` sends it; returns the response and the headers.
---@param o {secret: string, path?: string, delivery?: string, timestamp?: integer, event?: string, cacert?: string}
function M.send(server, source, body, o)
  local h = serve.sign { source = source, secret = o.secret, body = body, delivery = o.delivery,
                         timestamp = o.timestamp, event = o.event }
  return hoist.http.post(server.url .. (o.path or ("/hooks/" .. source)), { body = body, headers = h, timeout = 10,
                                                                          cacert = o.cacert }), h
end

-- The entries of the server's queue file.
function M.queue(state) return (require "hoist.native.journal").read(state .. "/serve/queue.jsonl") end

-- Waits (up to `seconds`, default 30) until `n` deliveries are finished; returns their entries.
function M.wait_finished(state, n, seconds)
  local finished, deadline = {}, hoist.now() + (seconds or 30)
  repeat
    finished = {}
    for _, e in ipairs(M.queue(state)) do
      if e.op == "finished" or e.op == "seen" then finished[#finished + 1] = e end
    end
    if #finished >= n then break end
    hoist.sleep(0.025)
  until hoist.now() > deadline
  return finished
end

return M
