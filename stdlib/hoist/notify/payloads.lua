--- hoist.notify.payloads: the JSON body each kind of channel gets for a run's summary:
--- Slack's incoming webhook (text + Block Kit blocks, within Slack's limits), a Teams workflow
--- webhook's message (one Adaptive Card in `attachments`), the generic `hoist.notify/v1`
--- document. The summary's strings are already scrubbed (hoist.notify.summary).
--- Internal to hoist.notify (docs/notify.md is its API).
local json = require "hoist.json"

local P = {}

--- At most `max` bytes of `s`, "..." ending a text that was longer. The cut never falls inside
--- a UTF-8 character (JSON refuses the half of one): it steps back over continuation bytes.
---@param s any
---@param max integer
---@return string
function P.cut(s, max)
  s = tostring(s)
  if #s <= max then return s end
  local i = max - 3
  while i > 0 and (s:byte(i + 1) or 0) >= 0x80 and s:byte(i + 1) < 0xC0 do i = i - 1 end
  return s:sub(1, i) .. "..."
end
local cut = P.cut

-- The first byte of a UTF-8 sequence -> its length and the range of its second byte
-- (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF).
local function lead(c)
  if c < 0x80 then return 1 end
  if c >= 0xC2 and c <= 0xDF then return 2, 0x80, 0xBF end
  if c == 0xE0 then return 3, 0xA0, 0xBF end
  if c == 0xED then return 3, 0x80, 0x9F end
  if c >= 0xE1 and c <= 0xEF then return 3, 0x80, 0xBF end
  if c == 0xF0 then return 4, 0x90, 0xBF end
  if c >= 0xF1 and c <= 0xF3 then return 4, 0x80, 0xBF end
  if c == 0xF4 then return 4, 0x80, 0x8F end
  return 0
end

--- `s` with every byte that is not part of a valid UTF-8 character replaced by "?": a
--- container's log or a remote's body may hold any bytes, and JSON takes UTF-8 only (the
--- whole notification would fail to encode).
---@param s string
---@return string
function P.valid_utf8(s)
  if not s:find("[\128-\255]") then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local len, lo, hi = lead(s:byte(i))
    local ok = len > 0 and i + len - 1 <= n
    if ok and len > 1 then
      local b = s:byte(i + 1)
      ok = b >= lo and b <= hi
      for j = i + 2, i + len - 1 do ok = ok and s:byte(j) >= 0x80 and s:byte(j) <= 0xBF end
    end
    if ok then
      out[#out + 1] = s:sub(i, i + len - 1)
      i = i + len
    else
      out[#out + 1] = "?"
      i = i + 1
    end
  end
  return table.concat(out)
end

local ICON = { success = "✅", failure = "❌", rollback = "↩️" }
local CHECK = { succeeded = "✓", failed = "✗", cancelled = "✗" } -- a verify stage's status

-- What the evidence says first, in the shape hoist.k8s gives it: a rollout's reason, its pods'
-- containers and its events; the logs come last, being the longest.
local SHAPED = { reason = true, pods = true, events = true, logs = true }

-- The evidence as a few lines of text: the rollout's reason, pods and events; then every
-- other field (tables as JSON: a failed check's last attempt); then the logs.
local function evidence_text(ev, max)
  if type(ev) ~= "table" then return nil end
  local lines = {}
  local function add(l) lines[#lines + 1] = l end
  if ev.reason then add("reason: " .. tostring(ev.reason)) end
  for _, pod in ipairs(type(ev.pods) == "table" and ev.pods or {}) do
    for _, c in ipairs(type(pod.containers) == "table" and pod.containers or {}) do
      add(("pod %s: %s %s %s, restarts %s"):format(tostring(pod.name), tostring(c.name), tostring(c.state or ""),
        tostring(c.detail or ""), tostring(c.restarts or 0)))
    end
  end
  for _, e in ipairs(type(ev.events) == "table" and ev.events or {}) do
    add(("event %s %s: %s"):format(tostring(e.reason or ""), tostring(e.object or ""), tostring(e.message or "")))
  end
  local keys = {}
  for k in pairs(ev) do if type(k) == "string" and not SHAPED[k] then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = ev[k]
    if type(v) == "table" then
      local ok, text = pcall(json.encode, v)
      v = ok and text or "(not JSON)"
    end
    add(("%s: %s"):format(k, tostring(v)))
  end
  if type(ev.logs) == "table" then
    for where, text in pairs(ev.logs) do add(("logs of %s:\n%s"):format(tostring(where), tostring(text))) end
  elseif type(ev.logs) == "string" then
    add("logs:\n" .. ev.logs)
  end
  if #lines == 0 then return nil end
  return cut(table.concat(lines, "\n"), max)
end

-- The facts as {label, value} pairs, in a fixed order.
local function fact_rows(s)
  local rows = {}
  local function row(label, v) if v ~= nil and v ~= "" then rows[#rows + 1] = { label, tostring(v) } end end
  row("Run", s.run)
  row("Target", s.target)
  row("Service", s.service)
  row("URL", s.url)
  row("Image", s.image)
  row("Digest", s.digest)
  row("Verify", s.verify.status)
  if s.duration then row("Duration", ("%.1fs"):format(s.duration)) end
  local keys = {}
  for k, v in pairs(s.facts or {}) do if type(v) ~= "table" then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do row(k, s.facts[k]) end
  return rows
end

-- Slack's mrkdwn treats &, < and > as markup (<!channel> would ping a whole channel).
local function mrkdwn(s) return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;")) end
local function first_line(s) return (tostring(s or ""):match("^[^\n]*")) end

-- Slack incoming webhook: `text` (the notification's fallback) and Block Kit `blocks`, within
-- Slack's limits: header 150 characters, section text 3000, 10 fields of 2000 each.
function P.slack(s)
  local title = ("%s %s"):format(ICON[s.event], s.title)
  local blocks = json.array { { type = "header", text = { type = "plain_text", text = cut(title, 150), emoji = true } } }
  local fields = json.array()
  for _, r in ipairs(fact_rows(s)) do
    if #fields < 10 then fields[#fields + 1] = { type = "mrkdwn", text = cut(("*%s*\n%s"):format(mrkdwn(r[1]), mrkdwn(r[2])), 2000) } end
  end
  blocks[#blocks + 1] = { type = "section", fields = fields }
  local checks = {}
  for _, c in ipairs(s.verify.checks) do
    checks[#checks + 1] = ("%s %s: %s"):format(CHECK[c.status] or "•", mrkdwn(c.stage), mrkdwn(c.message))
  end
  if #checks > 0 then
    blocks[#blocks + 1] = { type = "section", text = { type = "mrkdwn", text = cut("*Verify*\n" .. table.concat(checks, "\n"), 3000) } }
  end
  if s.error then
    local text = ("*Error* `%s`%s\n%s"):format(mrkdwn(s.error.code or "?"), s.error.stage and (" in stage *" .. mrkdwn(s.error.stage) .. "*") or "",
      mrkdwn(s.error.message or ""))
    blocks[#blocks + 1] = { type = "section", text = { type = "mrkdwn", text = cut(text, 3000) } }
    local ev = evidence_text(s.error.evidence, 2800)
    if ev then
      blocks[#blocks + 1] = { type = "section", text = { type = "mrkdwn", text = cut("```" .. mrkdwn(ev) .. "```", 3000) } }
    end
  end
  if #s.rolled_back > 0 or #s.left > 0 then
    local lines = {}
    for _, l in ipairs(s.rolled_back) do lines[#lines + 1] = "↺ undone: " .. mrkdwn(l) end
    for _, l in ipairs(s.left) do lines[#lines + 1] = ("✗ NOT undone: %s (`hoist rollback %s`)"):format(mrkdwn(l), mrkdwn(s.run)) end
    blocks[#blocks + 1] = { type = "section", text = { type = "mrkdwn", text = cut("*Rollback*\n" .. table.concat(lines, "\n"), 3000) } }
  end
  local context = ("%s %s · run %s"):format(mrkdwn(s.pipeline), mrkdwn(s.version), mrkdwn(s.run))
  if s.report_url then context = context .. (" · <%s|run report>"):format(mrkdwn(s.report_url)) end
  if s.ci_url then context = context .. (" · <%s|CI run>"):format(mrkdwn(s.ci_url)) end
  blocks[#blocks + 1] = { type = "context", elements = json.array { { type = "mrkdwn", text = cut(context, 3000) } } }
  local text = title
  if s.error then text = text .. ": " .. first_line(s.error.message) end
  return { text = cut(mrkdwn(text), 3000), blocks = blocks }
end

local COLOR = { success = "Good", failure = "Attention", rollback = "Warning" }

-- Teams workflow webhook ("Post to a channel when a webhook request is received"): a
-- message whose `attachments` hold one Adaptive Card (contentType
-- application/vnd.microsoft.card.adaptive; schema version 1.4, which Teams renders).
function P.teams(s)
  local body = json.array {
    { type = "TextBlock", text = ("%s %s"):format(ICON[s.event], s.title), weight = "Bolder", size = "Medium",
      color = COLOR[s.event], wrap = true },
  }
  local facts = json.array()
  for _, r in ipairs(fact_rows(s)) do facts[#facts + 1] = { title = r[1], value = r[2] } end
  body[#body + 1] = { type = "FactSet", facts = facts }
  for _, c in ipairs(s.verify.checks) do
    body[#body + 1] = { type = "TextBlock", text = ("%s %s: %s"):format(CHECK[c.status] or "·", c.stage, c.message), wrap = true,
                        spacing = "Small" }
  end
  if s.error then
    body[#body + 1] = { type = "TextBlock", text = ("Error %s%s"):format(s.error.code or "?", s.error.stage and (" in stage " .. s.error.stage) or ""),
                        weight = "Bolder", color = "Attention", wrap = true }
    body[#body + 1] = { type = "TextBlock", text = s.error.message or "", wrap = true }
    local ev = evidence_text(s.error.evidence, 3000)
    if ev then body[#body + 1] = { type = "TextBlock", text = ev, fontType = "Monospace", wrap = true, isSubtle = true } end
  end
  for _, l in ipairs(s.rolled_back) do body[#body + 1] = { type = "TextBlock", text = "Rolled back: " .. l, wrap = true } end
  for _, l in ipairs(s.left) do
    body[#body + 1] = { type = "TextBlock", text = ("NOT rolled back: %s (hoist rollback %s)"):format(l, s.run), color = "Attention", wrap = true }
  end
  local card = { ["$schema"] = "http://adaptivecards.io/schemas/adaptive-card.json", type = "AdaptiveCard", version = "1.4",
                 body = body, msteams = { width = "Full" } }
  local actions = json.array()
  if s.report_url then actions[#actions + 1] = { type = "Action.OpenUrl", title = "Run report", url = s.report_url } end
  if s.ci_url then actions[#actions + 1] = { type = "Action.OpenUrl", title = "CI run", url = s.ci_url } end
  if s.url and s.url:match("^https?://") then actions[#actions + 1] = { type = "Action.OpenUrl", title = "Open the service", url = s.url } end
  if #actions > 0 then card.actions = actions end
  return { type = "message", attachments = json.array {
    { contentType = "application/vnd.microsoft.card.adaptive", contentUrl = json.null, content = card } } }
end

-- The generic webhook: the summary as it is, under a versioned schema name.
function P.webhook(s, schema)
  local doc = { schema = schema }
  for k, v in pairs(s) do doc[k] = v end
  return doc
end

return P
