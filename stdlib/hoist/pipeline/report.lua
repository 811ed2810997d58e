--- hoist.pipeline.report: what a run tells people: the summary block on the terminal, the
--- dry-run plan, the CI runner's annotation, summary and outputs (hoist.ci), `hoist runs` and
--- `hoist report` (text, or a self-contained HTML page).
--- Internal to hoist.pipeline (docs/pipeline.md is its API).
local ci = require "hoist.ci"
local fs = require "hoist.fs"
local native = require "hoist.native.journal"

local R = {}

local function json() return require("hoist.native.json") end

local ICON = { succeeded = "✓", failed = "✗", cancelled = "✗", skipped = "-", running = "…", interrupted = "✗" }
local GH_ICON = { succeeded = "✅", failed = "❌", cancelled = "⛔", skipped = "⏭️", rolled_back = "↩️",
                  rollback_failed = "🔥", running = "⏳", died = "💀" }

local function fmt_duration(s)
  if not s then return "-" end
  if s < 60 then return ("%.2fs"):format(s) end
  return ("%dm%02ds"):format(math.floor(s / 60), math.floor(s % 60))
end
R.fmt_duration = fmt_duration

---------------------------------------------------------------- plan

local function plan_lines(run, result)
  local lines = { ("Plan: dry run of %s%s (run %s), %d change(s) it would make:"):format(
    result.pipeline, result.version ~= "" and (" " .. result.version) or "", result.run, #result.plan) }
  for i, s in ipairs(result.plan) do
    local detail = ""
    if s.method and s.url and not s.message:find(s.url, 1, true) then detail = ("  [%s %s]"):format(s.method, s.url) end
    lines[#lines + 1] = ("%3d. %s%s%s"):format(i, s.stage and ("[" .. s.stage .. "] ") or "", s.message, detail)
  end
  if #result.plan == 0 then lines[#lines + 1] = "  (nothing: no stage asked to change anything)" end
  return lines
end

local function plan_document(result)
  local steps = {}
  for i, s in ipairs(result.plan) do
    local c = {}
    for k, v in pairs(s) do c[k] = v end
    c.n = i
    steps[i] = c
  end
  if #steps == 0 then steps = setmetatable({}, getmetatable(json().decode("[]"))) end
  return { pipeline = result.pipeline, version = result.version, run = result.run, status = result.status, steps = steps }
end

local function write_plan(run, result)
  local doc = plan_document(result)
  local ok, text = pcall(json().encode, doc, { pretty = true })
  if not ok then
    hoist.log.warn("the plan holds values JSON cannot carry: " .. tostring(text))
    return
  end
  if run.dir then fs.write_file(run.dir .. "/plan.json", hoist.scrub(text) .. "\n") end
  if run.opts.quiet then return end
  if run.json then
    io.stdout:write(hoist.scrub(text), "\n")
  else
    io.stdout:write(hoist.scrub(table.concat(plan_lines(run, result), "\n")), "\n")
  end
  io.stdout:flush()
end

R.write_plan = write_plan

---------------------------------------------------------------- terminal summary

local function summary_lines(result)
  local head = ("%s %s · run %s · %s in %s"):format(result.pipeline, result.version, result.run,
    result.status:gsub("_", " "), fmt_duration(result.duration))
  if result.dry_run then head = head .. " (dry run)" end
  local lines = { "", "── " .. head }
  local width = 4
  for _, st in ipairs(result.stages) do width = math.max(width, #st.name) end
  for _, st in ipairs(result.stages) do
    local extra = ""
    if st.attempts and st.attempts > 1 then extra = (" (%d attempts)"):format(st.attempts) end
    if st.group then extra = extra .. " [parallel]" end
    if st.error and st.status == "failed" then
      extra = extra .. "  " .. st.error.code .. ": " .. tostring(st.error.message):match("^[^\n]*")
    end
    lines[#lines + 1] = ("   %s %-" .. width .. "s %8s%s"):format(ICON[st.status] or "?", st.name,
      st.status == "skipped" and "skipped" or fmt_duration(st.duration), extra)
  end
  for _, sec in ipairs(result.sections) do
    lines[#lines + 1] = "   " .. sec.title
    for _, l in ipairs(sec.lines) do lines[#lines + 1] = "     " .. l end
  end
  if #result.rolled_back > 0 then
    lines[#lines + 1] = "   Rolled back"
    for _, l in ipairs(result.rolled_back) do lines[#lines + 1] = "     ↺ " .. l end
  end
  if #result.left > 0 then
    lines[#lines + 1] = ("   NOT rolled back (finish with: hoist rollback %s)"):format(result.run)
    for _, c in ipairs(result.left_details or {}) do
      lines[#lines + 1] = ("     ✗ %s (%s): %s"):format(c.action, c.stage or "?", c.error and c.error.message or "?")
    end
  end
  if result.notified and #result.notified > 0 then
    lines[#lines + 1] = "   Notified"
    for _, n in ipairs(result.notified) do
      local how = n.planned and " (dry run: not sent)" or (n.ok and "" or (": " .. tostring(n.error or "not delivered")))
      lines[#lines + 1] = ("     %s %s%s"):format(n.ok and "✓" or "✗", n.channel, how)
    end
  end
  if result.dir ~= "" then lines[#lines + 1] = "   Run folder: " .. result.dir end
  return lines
end
R.summary_lines = summary_lines

---------------------------------------------------------------- GitHub

local function markdown(result)
  local md = {
    ("### %s %s %s: %s"):format(GH_ICON[result.status] or "", result.pipeline, result.version, result.status:gsub("_", " ")),
    "",
    ("Run `%s` · %s%s"):format(result.run, fmt_duration(result.duration), result.dry_run and " · dry run" or ""),
    "",
    "| Stage | Status | Duration |",
    "|---|---|---|",
  }
  for _, st in ipairs(result.stages) do
    md[#md + 1] = ("| %s | %s %s | %s |"):format(st.name, GH_ICON[st.status] or "", st.status,
      st.status == "skipped" and "-" or fmt_duration(st.duration))
  end
  for _, sec in ipairs(result.sections) do
    md[#md + 1] = ""
    md[#md + 1] = "#### " .. sec.title
    for _, l in ipairs(sec.lines) do md[#md + 1] = "- " .. l end
  end
  if #result.rolled_back > 0 or #result.left > 0 then
    md[#md + 1] = ""
    md[#md + 1] = "#### Rollback"
    for _, l in ipairs(result.rolled_back) do md[#md + 1] = "- ↩️ undone: " .. l end
    for _, l in ipairs(result.left) do md[#md + 1] = "- 🔥 left: " .. l .. (" (`hoist rollback %s`)"):format(result.run) end
  end
  if result.error then
    md[#md + 1] = ""
    md[#md + 1] = "#### Error"
    md[#md + 1] = ("> **%s**: %s"):format(result.error.code, tostring(result.error.message):gsub("\n", " "))
    if result.error.where then md[#md + 1] = ("> at `%s`"):format(result.error.where) end
  end
  if result.notified and #result.notified > 0 then
    md[#md + 1] = ""
    md[#md + 1] = "#### Notified"
    for _, n in ipairs(result.notified) do
      md[#md + 1] = ("- %s %s%s"):format(n.ok and "✅" or "❌", n.channel,
        n.planned and " (dry run: not sent)" or (n.ok and "" or (": " .. tostring(n.error or "not delivered"))))
    end
  end
  if result.dry_run and #result.plan > 0 then
    md[#md + 1] = ""
    md[#md + 1] = "#### Plan"
    for i, s in ipairs(result.plan) do md[#md + 1] = ("%d. %s`%s`"):format(i, s.stage and ("[" .. s.stage .. "] ") or "", s.message) end
  end
  return table.concat(md, "\n") .. "\n"
end
R.markdown = markdown

--- Everything printed at the end of a run: the plan (dry run), the summary block, the CI
--- runner's annotation, summary and outputs (hoist.ci).
---@param run table
---@param result hoist.PipelineResult
function R.finish(run, result)
  if run.dry_run then write_plan(run, result) end
  if not run.opts.quiet and not run.json then
    io.stderr:write(hoist.scrub(table.concat(summary_lines(result), "\n")), "\n")
    io.stderr:flush()
  end
  if run.ci then ci.finish(result, markdown(result)) end
end

---------------------------------------------------------------- hoist runs

--- Prints the runs of a state dir as a table (or JSON).
---@param runs hoist.RunSummary[]
---@param opts? {json?: boolean}
function R.print_runs(runs, opts)
  -- a plain script by its file name (the folder is in --json), "(script)" when unknown
  local function script_name(r)
    if not r.script then return "?" end
    return r.file and (r.file:match("[^/]+$") or r.file) or "(script)"
  end
  if opts and opts.json then
    local out = {}
    for i, r in ipairs(runs) do
      -- every key in every entry: null says "none" (a plain script has no pipeline)
      local null = json().null
      out[i] = { id = r.id, status = r.status, pipeline = r.pipeline or null, script = r.file or null,
                 version = r.version or null, started = r.started or null, duration = r.duration or null,
                 dry_run = r.dry_run, pending = r.pending, dir = r.dir }
    end
    if #out == 0 then out = json().decode("[]") end
    print(json().encode(out))
    return
  end
  if #runs == 0 then
    print("no runs recorded")
    return
  end
  print(("%-22s %-16s %-20s %-10s %-19s %9s"):format("RUN", "STATUS", "PIPELINE", "VERSION", "STARTED", "DURATION"))
  for _, r in ipairs(runs) do
    local status = r.status .. (r.dry_run and " (dry)" or "")
    if r.status == "died" and r.pending > 0 then status = status .. " !" end
    print(("%-22s %-16s %-20s %-10s %-19s %9s"):format(r.id, status, r.pipeline or script_name(r),
      r.version or "-", r.started and os.date("%Y-%m-%d %H:%M:%S", math.floor(r.started)) or "-",
      fmt_duration(r.duration)))
  end
  for _, r in ipairs(runs) do
    if r.status == "died" and r.pending > 0 then
      print(("! run %s died with %d change(s) not undone: hoist rollback %s"):format(r.id, r.pending, r.id))
    end
  end
end

return R
