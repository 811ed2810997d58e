--- hoist.docker.health: docker.wait_healthy, the smoke test of a started container. Each
--- round looks at the container first, so one that exits is reported at once, with its exit
--- code and last log lines, not after the timeout. Reached as hoist.docker.wait_healthy.
local cli = require "hoist.docker.cli"

local M = {}

--- Test hook: function(opts) -> {status=} used instead of hoist.http.request.
M.http = nil

local function docker() return require "hoist.docker" end

local function http_get(url, timeout)
  local request = M.http
  if not request then
    local http = hoist.http
    if not (http and http.request) then
      cli.fail("tool_missing", "docker.wait_healthy: url= needs hoist.http, which this engine lacks")
    end
    request = http.request
  end
  return request { method = "GET", url = url, timeout = timeout }
end

local function last_logs(name, n)
  local ok, text = require("hoist.util").try(docker().logs, { name = name, tail = n })
  if not ok then return { "(logs unavailable: " .. tostring(text) .. ")" } end
  return cli.tail(cli.lines(text), n)
end

-- One round's verdict from the container's state: nil while it runs, else why it failed.
local function container_problem(state)
  if state.Running and not state.Restarting then return nil end
  if state.Restarting then return "restarting", ("is restarting (exit code %s)"):format(tostring(state.ExitCode)) end
  local why = ("exited with code %s"):format(tostring(state.ExitCode))
  if state.OOMKilled then why = why .. " (killed: out of memory)" end
  if state.Error and state.Error ~= "" then why = why .. ": " .. state.Error end
  return "exited", why
end

local function health_log_lines(health)
  local out = {}
  for _, h in ipairs(health and health.Log or {}) do
    out[#out + 1] = ("exit %s: %s"):format(tostring(h.ExitCode), (h.Output or ""):gsub("%s+$", ""))
  end
  return cli.tail(out, 5)
end

---@class hoist.docker.WaitHealthyOptions
---@field name string container name or id
---@field url? string poll this URL until it answers `expect_status` (default any 2xx)
---@field healthcheck? boolean wait for the image's HEALTHCHECK to report healthy
---@field expect_status? integer
---@field timeout? number seconds (default 60)
---@field interval? number seconds between rounds (default 1)
---@field request_timeout? number seconds per HTTP request (default 5)

--- Waits until a container is healthy: its URL answers and/or its Docker HEALTHCHECK says
--- healthy. Raises rollout_failed with evidence (statuses seen, exit code, last log lines)
--- when the container exits, turns unhealthy or the timeout passes.
---@param opts hoist.docker.WaitHealthyOptions
---@return {name: string, id: string, attempts: integer, elapsed: number, health?: string, status?: integer}
function M.wait_healthy(opts)
  local fn = "docker.wait_healthy"
  if type(opts) ~= "table" then cli.fail("invalid_argument", fn .. ": expected {name=, url= or healthcheck=true}") end
  local name = cli.opt(fn, opts, "name", "string", true)
  local url = cli.opt(fn, opts, "url", "string")
  if not url and not opts.healthcheck then
    cli.fail("invalid_argument", fn .. ": give url= (an HTTP check) or healthcheck = true (the image's HEALTHCHECK)")
  end
  if url and not url:match("^https?://") then cli.fail("invalid_argument", fn .. ": url must start with http:// or https://") end
  for _, k in ipairs { "timeout", "interval", "request_timeout", "expect_status" } do
    if opts[k] ~= nil and (type(opts[k]) ~= "number" or opts[k] < 0) then
      cli.fail("invalid_argument", ("%s: option %s must be a number >= 0"):format(fn, k))
    end
  end
  local timeout, interval = opts.timeout or 60, opts.interval or 1
  local started = hoist.now()
  local statuses, attempts = {}, 0

  local function failure(reason, why, extra)
    local logs = last_logs(name, 20)
    local details = { reason = reason, container = name, statuses = cli.tail(statuses, 10), logs = logs,
                      attempts = attempts, elapsed = hoist.now() - started }
    for k, v in pairs(extra or {}) do details[k] = v end
    local shown = cli.tail(logs, 5)
    local msg = ("container %s %s"):format(name, why)
    if #shown > 0 then msg = msg .. "; last log lines:\n  | " .. table.concat(shown, "\n  | ") end
    cli.fail("rollout_failed", msg, details)
  end

  while true do
    attempts = attempts + 1
    local ok, info = pcall(docker().inspect, { name = name, type = "container" })
    if not ok then
      if not hoist.is_error(info, "not_found") then error(info, 0) end
      statuses[#statuses + 1] = "container gone"
      cli.fail("rollout_failed", ("container %s is gone (removed before it became healthy)"):format(name),
        { reason = "gone", container = name, statuses = cli.tail(statuses, 10), attempts = attempts })
    end
    local state = info.State or {}
    local reason, why = container_problem(state)
    if reason then
      statuses[#statuses + 1] = "container " .. (state.Status or reason)
      failure(reason, why .. " before it became healthy",
        { container_exit_code = state.ExitCode, state = state.Status, oom_killed = state.OOMKilled,
          health_log = health_log_lines(state.Health) })
    end

    local healthy, round = true, {}
    if opts.healthcheck then
      if not state.Health then
        cli.fail("invalid_argument", ("%s: container %s has no HEALTHCHECK; pass url= instead"):format(fn, name))
      end
      round[#round + 1] = "health " .. tostring(state.Health.Status)
      if state.Health.Status == "unhealthy" then
        statuses[#statuses + 1] = table.concat(round, ", ")
        failure("unhealthy", "is unhealthy (its HEALTHCHECK fails)", { health_log = health_log_lines(state.Health) })
      end
      healthy = state.Health.Status == "healthy"
    end
    local status
    if url then
      local got, resp = pcall(http_get, url, opts.request_timeout or 5)
      if got then
        status = resp.status
        round[#round + 1] = "GET " .. url .. " -> " .. tostring(status)
        local want = opts.expect_status
        healthy = healthy and (want and status == want or (not want and status >= 200 and status < 300))
      else
        if hoist.is_error(resp, "tool_missing") or hoist.is_error(resp, "cancelled") then error(resp, 0) end
        round[#round + 1] = "GET " .. url .. " -> " .. (type(resp) == "table" and tostring(resp.message) or tostring(resp))
        healthy = false
      end
    end
    statuses[#statuses + 1] = table.concat(round, ", ")
    if healthy then
      local elapsed = hoist.now() - started
      hoist.log.event("docker.healthy", ("container %s is healthy after %.1fs"):format(name, elapsed),
        { name = name, attempts = attempts, elapsed = elapsed })
      return { name = name, id = info.Id, attempts = attempts, elapsed = elapsed,
               health = state.Health and state.Health.Status, status = status }
    end
    if hoist.now() - started >= timeout then
      failure("timeout", ("was not healthy after %gs (%d checks; last: %s)"):format(timeout, attempts, statuses[#statuses]))
    end
    hoist.sleep(interval)
  end
end

return M
