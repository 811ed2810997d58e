--- hoist.serve.queue: the durable queue of `hoist serve`. Internal to hoist.serve
--- (docs/serve.md, "Durability").
---
--- One JSON-lines file, `<state_dir>/serve/queue.jsonl`, appended and fsynced (the run
--- journal's writer) before the sender is answered 202 and before each run starts:
---
---   {"op":"accepted","id":...,"service":...,"pipeline":...,"params":{...},"at":...}
---   {"op":"started","id":...,"run":"<run id>","at":...}
---   {"op":"finished","id":...,"run":...,"outcome":"succeeded|failed|...","at":...}
---   {"op":"seen","id":...,"at":...,"outcome":...}      (a finished delivery, compacted)
---
--- The same file is the record of delivery ids already accepted, so a replay is refused
--- after a restart too. At start the file is read, folded and written again whole
--- (finished deliveries older than the retention dropped, a line cut short by a crash
--- gone), then:
---   - an accepted delivery that never started is queued again (nothing lost);
---   - a started one whose run folder does not exist never ran: it is queued again, with
---     a new run id;
---   - a started one whose run ended while no server was there is finished with its exit
---     code (written by the shell that waited for it) or its run folder's status;
---   - a started one whose `hoist run` is still alive (runs live in their own session: a
---     SIGTERM or kill -9 of the server leaves them running) is waited for, and keeps its
---     service busy meanwhile;
---   - one whose run died midway is `interrupted`, never run again (`hoist rollback <run>`
---     finishes it);
---   - a forward that started is `unknown` (GitHub may have it): not sent again.
--- So a restart or a kill -9 loses no accepted delivery and runs none twice.
local jnative = require "hoist.native.journal"
local core = require "hoist.native.core"
local util = require "hoist.util"
local lock = require "hoist.targets.lock"
local runlog = require "hoist.pipeline.journal"

local M = {}
local Q = {}
Q.__index = Q

local function fold(entries)
  local by_id, order = {}, {}
  for _, e in ipairs(entries) do
    local id = e.id
    if type(id) == "string" then
      if e.op == "accepted" or e.op == "seen" then
        if not by_id[id] then order[#order + 1] = id end
        local d = {}
        for k, v in pairs(e) do d[k] = v end
        d.op, d.state = nil, e.op == "seen" and "finished" or "queued"
        by_id[id] = d
      elseif by_id[id] and e.op == "started" then
        by_id[id].state, by_id[id].run, by_id[id].started_at = "started", e.run, e.at
      elseif by_id[id] and e.op == "finished" then
        local d = by_id[id]
        d.state, d.outcome, d.run, d.finished_at = "finished", e.outcome, e.run or d.run, e.at
      end
    end
  end
  return by_id, order
end

local function line(t) return hoist.json.encode(t) .. "\n" end

local function accepted_entry(d)
  return { op = "accepted", id = d.id, delivery = d.delivery, source = d.source, route = d.route, event = d.event,
           service = d.service, pipeline = d.pipeline, params = d.params, forward = d.forward, at = d.at }
end

local function cmdline_has(pid, needle)
  local ok, text = util.try(hoist.fs.read_file, "/proc/" .. pid .. "/cmdline", { missing_ok = true })
  return ok and text ~= nil and ("\0" .. text):find(needle, 1, true) ~= nil
end

--- Internal: true when the `hoist run --run-id <run>` process is alive on this host (it
--- outlives the server): the pid its shell noted, checked against /proc/<pid>/cmdline (a
--- recycled pid is someone else); without the note, every process's cmdline.
---@param run string
---@param pid_file? string
---@return boolean
function M.run_alive(run, pid_file)
  local needle = "\0--run-id\0" .. run .. "\0"
  local noted = pid_file and tonumber((hoist.fs.read_file(pid_file, { missing_ok = true }) or ""):match("%d+"))
  if noted then return cmdline_has(noted, needle) end
  local ok, names = util.try(hoist.fs.list, "/proc")
  if not ok then return false end
  for _, name in ipairs(names) do
    if name:match("^%d+$") and cmdline_has(name, needle) then return true end
  end
  return false
end

local outcomes = { [0] = "succeeded", [1] = "failed", [2] = "refused", [3] = "rollback_failed", [4] = "policy_refused",
                   [130] = "cancelled" }

--- Internal: what a `hoist run` exit code means for a delivery: its documented codes
--- (docs/cli.md); killed by a signal it could not handle (SIGKILL: 137), `interrupted`.
---@param code integer
---@return string
function M.outcome_of(code)
  return outcomes[code] or (code > 128 and "interrupted") or ("exit " .. code)
end

-- The status a run left in its folder: succeeded, failed, rolled_back, ...; "interrupted"
-- when it died midway.
local function run_status(dir, run)
  local s
  if hoist.fs.exists(dir .. "/journal.jsonl") then
    s = runlog.summarize(runlog.read(dir), run)
  else
    s = runlog.script_summary(dir, run, 0)
  end
  if s.status == "running" or s.status == "died" then return "interrupted", s end
  return s.status, s
end

---@class hoist.serve.QueueOptions
---@field state_dir string
---@field retention number seconds a finished delivery's id is kept against replays
---@field lock_timeout number seconds a run waits for its service's lock
---@field runner fun(d: table, run: string): table runs a delivery: {outcome=, code=, error=}

--- Opens (and recovers) the queue of `opts.state_dir`.
---@param opts hoist.serve.QueueOptions
function M.open(opts)
  local q = setmetatable({ state_dir = opts.state_dir, dir = opts.state_dir .. "/serve", retention = opts.retention,
                           lock_timeout = opts.lock_timeout, runner = opts.runner, seen = {}, pending = {},
                           workers = {}, running = {}, counts = { accepted = 0, finished = 0, replayed = 0 } }, Q)
  q.path = q.dir .. "/queue.jsonl"
  hoist.fs.mkdir(q.dir, { mode = "0700" })
  -- one server per state dir: a second one's compaction would replace the file the first
  -- appends to. The kernel frees the lock when its holder dies (kill -9 included).
  local held, holder = require("hoist.native.lock").try(q.dir .. "/server.lock",
    hoist.json.encode { pid = jnative.self().pid, since = os.date("!%Y-%m-%dT%H:%M:%SZ") })
  if not held then
    local ok, h = pcall(hoist.json.decode, holder or "")
    util.fail("conflict", ("another hoist serve (pid %s) already serves the state dir %s: one server per state dir")
      :format(ok and type(h) == "table" and tostring(h.pid) or "?", opts.state_dir), { state_dir = opts.state_dir })
  end
  q.server_lock = held
  local entries = hoist.fs.exists(q.path) and jnative.read(q.path) or {}
  local by_id, order = fold(entries)
  -- written again whole: what is kept, without a torn last line the next append would join
  local keep, now, recover = {}, os.time(), {}
  for _, id in ipairs(order) do
    local d = by_id[id]
    if d.state == "finished" then
      if (d.finished_at or d.at or now) >= now - q.retention then
        keep[#keep + 1] = line { op = "seen", id = id, at = d.finished_at or d.at, outcome = d.outcome, run = d.run,
                                 service = d.service }
        q.seen[id] = d
      end
    else
      keep[#keep + 1] = line(accepted_entry(d))
      if d.state == "started" then keep[#keep + 1] = line { op = "started", id = id, run = d.run, at = d.started_at } end
      q.seen[id] = d
      recover[#recover + 1] = d
    end
  end
  hoist.fs.write_file(q.path, table.concat(keep), { mode = "0600" })
  q.journal = jnative.open(q.path)
  q.recovered = recover
  return q
end

--- Takes up what the last server left (see the module comment): queues, waits for or
--- finishes each delivery it had not finished.
function Q:resume()
  local recover = self.recovered or {}
  self.recovered = nil
  for _, d in ipairs(recover) do self:recover(d) end
end

function Q:append(entry) self.journal:append(entry) end

function Q:enqueue(d)
  local list = self.pending[d.service]
  if not list then
    list = {}
    self.pending[d.service] = list
  end
  list[#list + 1] = d
  self:kick(d.service)
  return #list
end

-- What a restart finds (see the module comment).
function Q:recover(d)
  if d.state == "queued" then
    hoist.log.info(("delivery %s (service %s) was accepted before the restart: queued again"):format(d.delivery or d.id, d.service))
    return self:enqueue(d)
  end
  if d.forward then
    return self:finish(d, { outcome = "unknown", error = "hoist serve stopped while forwarding it; not sent again" })
  end
  local f = self:run_files(d.run)
  local dir = self.state_dir .. "/runs/" .. d.run
  if self:ended(d, f) then return end
  if M.run_alive(d.run, f.pid) then
    hoist.log.info(("delivery %s (service %s): run %s is still running; waiting for it"):format(d.delivery or d.id, d.service, d.run))
    self.running[d.service] = d
    self.workers[d.service] = hoist.spawn(function()
      while M.run_alive(d.run, f.pid) do hoist.sleep(0.25) end
      hoist.sleep(0.1) -- its shell, if alive, notes the exit code now
      if not self:ended(d, f) then
        hoist.fs.remove(f.params)
        self:finish(d, { outcome = (run_status(dir, d.run)), adopted = true })
      end
      self.running[d.service] = nil
      self.workers[d.service] = nil
      self:kick(d.service)
    end)
    return
  end
  if not hoist.fs.exists(dir) then
    hoist.log.info(("delivery %s (service %s): its run %s never started; queued again"):format(d.delivery or d.id, d.service, d.run))
    d.state, d.run = "queued", nil
    return self:enqueue(d)
  end
  local status = run_status(dir, d.run)
  hoist.fs.remove(f.params)
  self:finish(d, { outcome = status, error = status == "interrupted" and
    ("run %s died midway (finish it with: hoist rollback %s)"):format(d.run, d.run) or nil })
end

-- Finishes `d` from the exit code its run's shell noted, if it did; true then.
function Q:ended(d, f)
  local code = tonumber((hoist.fs.read_file(f.code, { missing_ok = true }) or ""):match("%d+"))
  if not code then return false end
  hoist.fs.remove(f.params)
  self:finish(d, { outcome = M.outcome_of(code), code = code, adopted = true })
  return true
end

--- The delivery already accepted under `id`, if any.
function Q:seen_before(id) return self.seen[id] end

--- Accepts a delivery: fsynced to disk before this returns; then queued for its service.
--- Returns its place in its service's queue (1: next).
function Q:accept(d)
  d.at = d.at or os.time()
  d.state = "queued"
  self.seen[d.id] = d -- before the write: two copies arriving together are one delivery
  local ok, err = pcall(self.append, self, accepted_entry(d))
  if not ok then
    self.seen[d.id] = nil
    error(err, 0)
  end
  self.counts.accepted = self.counts.accepted + 1
  return self:enqueue(d)
end

function Q:finish(d, result)
  d.state, d.outcome = "finished", result.outcome
  if d.run then -- the notes of a run whose end is now recorded (its log stays)
    local f = self:run_files(d.run)
    hoist.fs.remove(f.pid)
    hoist.fs.remove(f.code)
  end
  self:append { op = "finished", id = d.id, run = d.run, outcome = result.outcome, code = result.code,
                error = result.error, at = os.time() }
  self.counts.finished = self.counts.finished + 1
  local level = (result.outcome == "succeeded" or result.outcome == "forwarded") and "info" or "warn"
  hoist.log.event("serve.finished", ("delivery %s (service %s)%s: %s%s"):format(d.delivery or d.id, d.service,
    d.run and (" run " .. d.run) or "", result.outcome, result.error and (": " .. result.error) or ""),
    { delivery = d.delivery, service = d.service, run = d.run, outcome = result.outcome, code = result.code }, level)
end

-- A run id not used before: ids are a UTC second and 16 random bits, so runs of several
-- services started in one second can draw the same; this process remembers the ids it
-- handed out (a child may not have made its folder yet) and the state dir has the rest.
function Q:new_run_id()
  self.ids = self.ids or {}
  while true do
    local id = core.new_run_id()
    if not self.ids[id] and not hoist.fs.exists(self.state_dir .. "/runs/" .. id) then
      self.ids[id] = true
      return id
    end
  end
end

--- Internal: the files of a run: its parameters (0600, removed when it ends), its output,
--- its pid and the exit code its shell notes when it ends.
---@param run string
---@return {params: string, log: string, pid: string, code: string}
function Q:run_files(run)
  local base = self.dir .. "/runs/" .. run
  return { params = base .. ".params.json", log = base .. ".log", pid = base .. ".pid", code = base .. ".code" }
end

-- One run: the service's lock (another `hoist serve` on the same state dir may be running
-- it), the start recorded, the runner, the outcome recorded. A cancellation (SIGTERM of the
-- server) records nothing and is raised again (see the comment in the function).
function Q:execute(d)
  local run = self:new_run_id()
  local started = false
  local ok, result = pcall(function()
    local held = lock.acquire { target = "serve", service = d.service, state_dir = self.state_dir, run = run,
                                timeout = self.lock_timeout }
    return lock.holding(held, function()
      self:append { op = "started", id = d.id, run = run, at = os.time() }
      started, d.run, d.state = true, run, "started"
      self.running[d.service] = d
      return self.runner(d, run)
    end)
  end)
  self.running[d.service] = nil
  if ok then return self:finish(d, result) end
  -- The server is stopping: a run that started goes on in its own session and the next
  -- server records it; one that did not start is still queued on disk.
  if hoist.is_error(result, "cancelled") then error(result, 0) end
  self:finish(d, { outcome = "failed", error = hoist.is_error(result) and result.message or tostring(result) })
end

-- One worker per service with work: at most one run of a service at a time, in the order
-- the deliveries were accepted.
function Q:kick(service)
  if self.workers[service] then return end
  self.workers[service] = hoist.spawn(function()
    local ok, err = pcall(function()
      while true do
        local list = self.pending[service]
        local d = list and table.remove(list, 1)
        if not d then break end
        self:execute(d)
      end
    end)
    self.workers[service] = nil
    if not ok then error(err, 0) end
  end)
end

--- Counts for /healthz and the log: queued, running, accepted, finished.
function Q:stats()
  local queued, running = 0, 0
  for _, list in pairs(self.pending) do queued = queued + #list end
  for _ in pairs(self.running) do running = running + 1 end
  return { queued = queued, running = running, accepted = self.counts.accepted, finished = self.counts.finished }
end

return M
