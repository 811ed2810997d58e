--- hoist.pipeline.html: `hoist report <run-id>`: a run told from its journal.jsonl and
--- events.jsonl, as text or as one self-contained HTML page (inline CSS, no external assets).
--- Internal to hoist.pipeline (docs/pipeline.md is its API).
local journal = require "hoist.pipeline.journal"
local native = require "hoist.native.journal"
local fs = require "hoist.fs"
local fmt_duration = require("hoist.pipeline.report").fmt_duration

local M = {}

local function esc(s)
  return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"):gsub('"', "&quot;"):gsub("'", "&#39;"))
end

---@class hoist.RunReport
---@field run hoist.RunSummary
---@field sections {title: string, lines: string[]}[]
---@field errors {ts: number, message: string, stage?: string}[]
---@field plan table[]
---@field t0 number
---@field t1 number

--- Gathers what a report shows about a run.
---@param opts {run: string, state_dir?: string}
---@return hoist.RunReport
function M.collect(opts)
  local state_dir = opts.state_dir or ".hoist"
  local dir = journal.run_dir(state_dir, opts.run)
  local s
  if not fs.exists(dir .. "/journal.jsonl") and fs.exists(dir .. "/events.jsonl") then
    s = journal.script_summary(dir, opts.run) -- a plain script's run
  else
    s = journal.summarize(journal.read(dir), opts.run) -- raises when there is no such run
  end
  local ok, events = pcall(native.read, dir .. "/events.jsonl")
  if not ok then events = {} end
  local rep = { run = s, sections = {}, errors = {}, plan = {}, dir = dir }
  local by_title = {}
  for _, e in ipairs(events) do
    local f = e.fields or {}
    if e.kind == "summary" and f.section then
      local sec = by_title[f.section]
      if not sec then
        sec = { title = f.section, lines = {} }
        by_title[f.section] = sec
        rep.sections[#rep.sections + 1] = sec
      end
      for _, l in ipairs(f.lines or {}) do sec.lines[#sec.lines + 1] = tostring(l) end
    elseif e.kind == "plan" then
      rep.plan[#rep.plan + 1] = { message = f.message or e.message, stage = f.stage }
    elseif e.level == "error" then
      rep.errors[#rep.errors + 1] = { ts = e.ts, message = e.message, stage = f.stage }
    end
  end
  rep.t0 = s.started or 0
  rep.t1 = s.duration and (rep.t0 + s.duration) or rep.t0
  for _, st in ipairs(s.stages) do
    if st.started then rep.t1 = math.max(rep.t1, st.started + (st.duration or 0)) end
  end
  for _, c in ipairs(s.compensations) do
    if c.started then rep.t1 = math.max(rep.t1, c.started + (c.duration or 0)) end
  end
  return rep
end

local CSS = [[
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1000px;color:#1d2330;padding:0 1em}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid #dde;padding-bottom:.2em}
.meta{color:#5a6275}.badge{display:inline-block;padding:.1em .6em;border-radius:1em;font-weight:600;color:#fff}
.succeeded{background:#1f883d}.failed,.rollback_failed,.died,.interrupted{background:#cf222e}.rolled_back{background:#bf8700}
.running,.pending{background:#0969da}.skipped,.cancelled,.not_needed{background:#8c959f}
.timeline{position:relative;border-left:1px solid #ccd;margin:.5em 0}
.row{display:flex;align-items:center;height:26px}.label{width:170px;flex:none;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.track{position:relative;flex:1;height:18px;background:#f3f4f7;border-radius:3px}
.bar{position:absolute;top:0;height:18px;border-radius:3px;min-width:2px}
.dur{width:80px;flex:none;text-align:right;color:#5a6275;font-variant-numeric:tabular-nums}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eef;padding:.3em .5em;text-align:left;vertical-align:top}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;background:#f6f8fa;border-radius:3px}
pre{padding:.6em;white-space:pre-wrap}.err{color:#a40e26;white-space:pre-wrap}
td,th,li,pre,code,.err{overflow-wrap:anywhere}
]]

--- The HTML page of a run.
---@param rep hoist.RunReport
---@return string
function M.render(rep)
  local s = rep.run
  local h = {}
  local function add(x) h[#h + 1] = x end
  local total = math.max(rep.t1 - rep.t0, 0.001)
  add("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hoist run " .. esc(s.id) .. "</title>")
  add("<style>" .. CSS .. "</style></head><body>")
  add(("<h1>%s %s <span class=\"badge %s\">%s</span></h1>"):format(esc(s.pipeline or "script"), esc(s.version or ""),
    esc(s.status), esc(s.status:gsub("_", " "))))
  add(("<p class=\"meta\">run <code>%s</code> · started %s · %s%s</p>"):format(esc(s.id),
    s.started and esc(os.date("%Y-%m-%d %H:%M:%S", math.floor(s.started))) or "?", esc(fmt_duration(s.duration)),
    s.dry_run and " · dry run" or ""))

  add("<h2>Stages</h2><div class=\"timeline\">")
  for _, st in ipairs(s.stages) do
    local left = st.started and ((st.started - rep.t0) / total * 100) or 0
    local width = (st.duration or 0) / total * 100
    add(("<div class=\"row stage\" data-stage=\"%s\"><div class=\"label\" title=\"%s\">%s</div><div class=\"track\">"
      .. "<div class=\"bar %s\" style=\"left:%.2f%%;width:%.2f%%\" title=\"%s %s\"></div></div><div class=\"dur\">%s</div></div>"):format(
      esc(st.name), esc(st.name), esc(st.name), esc(st.status or "running"), math.max(0, math.min(left, 100)),
      math.min(width, 100 - math.max(0, math.min(left, 100))), esc(st.name), esc(st.status or ""),
      esc(st.status == "skipped" and "skipped" or fmt_duration(st.duration))))
  end
  for _, c in ipairs(s.compensations) do
    if c.started then -- compensations that ran show on the same time axis
      local left = math.max(0, math.min((c.started - rep.t0) / total * 100, 100))
      local width = math.min((c.duration or 0) / total * 100, 100 - left)
      add(("<div class=\"row undo\"><div class=\"label\" title=\"%s\">↺ %s</div><div class=\"track\"><div class=\"bar %s\" "
        .. "style=\"left:%.2f%%;width:%.2f%%\"></div></div><div class=\"dur\">%s</div></div>"):format(
        esc(c.action), esc(c.action), esc(c.status == "succeeded" and "rolled_back" or c.status), left, width,
        esc(fmt_duration(c.duration))))
    end
  end
  add("</div><table><tr><th>Stage</th><th>Status</th><th>Attempts</th><th>Duration</th><th>Error</th></tr>")
  for _, st in ipairs(s.stages) do
    add(("<tr><td>%s</td><td><span class=\"badge %s\">%s</span></td><td>%s</td><td>%s</td><td class=\"err\">%s</td></tr>"):format(
      esc(st.name), esc(st.status or "running"), esc(st.status or "running"), esc(st.attempt or 1), esc(fmt_duration(st.duration)),
      st.error and esc(("%s: %s"):format(st.error.code or "?", st.error.message or "")) or ""))
  end
  add("</table>")

  if #rep.sections > 0 then
    add("<h2>Summary</h2>")
    for _, sec in ipairs(rep.sections) do
      add("<h3>" .. esc(sec.title) .. "</h3><ul>")
      for _, l in ipairs(sec.lines) do add("<li>" .. esc(l) .. "</li>") end
      add("</ul>")
    end
  end

  local e = s.error or (s.finish and s.finish.error)
  if e or #rep.errors > 0 then
    add("<h2>Errors</h2>")
    if e then
      add(("<pre class=\"err\">%s: %s%s</pre>"):format(esc(e.code or "?"), esc(e.message or ""),
        e.where and esc("\nat " .. e.where) or ""))
    end
    if #rep.errors > 0 then
      add("<ul>")
      for _, x in ipairs(rep.errors) do add("<li class=\"err\">" .. esc(x.message) .. "</li>") end
      add("</ul>")
    end
  end

  if #s.compensations > 0 then
    add("<h2>Compensations</h2><table><tr><th>#</th><th>Action</th><th>Stage</th><th>Status</th><th>Arguments</th></tr>")
    for _, c in ipairs(s.compensations) do
      local ok, args = pcall(require("hoist.native.json").encode, c.args or {})
      add(("<tr><td>%d</td><td><code>%s</code></td><td>%s</td><td><span class=\"badge %s\">%s</span>%s</td><td><code>%s</code></td></tr>"):format(
        c.id or 0, esc(c.action), esc(c.stage or ""), esc(c.status), esc(c.status),
        c.error and (" <span class=\"err\">" .. esc(c.error.message or "") .. "</span>") or "", esc(ok and args or "?")))
    end
    add("</table>")
  end

  if #rep.plan > 0 then
    add("<h2>Plan</h2><ol>")
    for _, p in ipairs(rep.plan) do
      add("<li>" .. (p.stage and ("[" .. esc(p.stage) .. "] ") or "") .. "<code>" .. esc(p.message) .. "</code></li>")
    end
    add("</ol>")
  end
  add(("<p class=\"meta\">hoist %s · %s</p></body></html>"):format(esc(hoist.version or ""), esc(rep.dir)))
  return table.concat(h, "\n") .. "\n"
end

--- Plain text of a run (what `hoist report <id>` prints without --html).
---@param rep hoist.RunReport
---@return string
function M.text(rep)
  local s = rep.run
  local lines = { ("%s%s · run %s · %s%s · %s"):format(s.pipeline or "script", s.version and (" " .. s.version) or "",
    s.id, s.status, s.dry_run and " (dry run)" or "", fmt_duration(s.duration)) }
  for _, st in ipairs(s.stages) do
    lines[#lines + 1] = ("  %-20s %-10s %8s%s"):format(st.name, st.status or "running", fmt_duration(st.duration),
      st.error and ("  " .. (st.error.code or "?") .. ": " .. (st.error.message or "")) or "")
  end
  for _, sec in ipairs(rep.sections) do
    lines[#lines + 1] = "  " .. sec.title
    for _, l in ipairs(sec.lines) do lines[#lines + 1] = "    " .. l end
  end
  for _, c in ipairs(s.compensations) do
    lines[#lines + 1] = ("  compensation %d %s (%s): %s"):format(c.id or 0, c.action, c.stage or "?", c.status)
  end
  return table.concat(lines, "\n") .. "\n"
end

--- `hoist report <run-id> [--html FILE]`.
---@param opts {run: string, state_dir?: string, html?: string}
function M.main(opts)
  local rep = M.collect(opts)
  if opts.html and opts.html ~= "" then
    fs.write_file(opts.html, hoist.scrub(M.render(rep)))
    print(("wrote %s (run %s, %s)"):format(opts.html, rep.run.id, rep.run.status))
  else
    io.stdout:write(M.text(rep))
  end
end

return M
