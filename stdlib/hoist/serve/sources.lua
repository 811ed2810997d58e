--- hoist.serve.sources: the webhook senders `hoist serve` understands, each as its own
--- documentation gives the signature, the delivery id, the time and the event name. Internal
--- to hoist.serve (docs/serve.md is the reference).
---
--- A source is a table:
---   header      the signature header (lower case); a request without it is refused (401)
---   verify      fun(req, secret): boolean, why?  the signature, compared in constant time
---   delivery    fun(req, payload): string?       the id replays are refused by
---   timestamp   fun(req, payload): number?       unix seconds the sender signed; nil: none
---   event       fun(req, payload): string?, string?   event name and action
---   sign        fun(secret, body, o): headers    what the sender sends (tests, the generic doc)
local native = require "hoist.native.serve"
local core = require "hoist.native.core"

local M = {}

local function to_hex(bytes) return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
local function from_hex(text)
  if type(text) ~= "string" or #text % 2 ~= 0 or not text:match("^%x*$") then return nil end
  return (text:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end
local function from_base64(text)
  local ok, bytes = pcall(core.base64_decode, text)
  return ok and bytes or nil
end
local to_base64 = core.base64_encode
M.to_hex, M.from_hex, M.to_base64 = to_hex, from_hex, to_base64

local hmac, same = native.hmac_sha256, native.same_bytes

-- `value` is one of the comma- or space-separated "<prefix><encoded>" items of a header
-- (several signatures while a secret is rotated): true when one of them is `expected`.
local function any_matches(value, expected, prefix, decode, sep)
  for item in value:gmatch(sep) do
    if item:sub(1, #prefix) == prefix then
      local raw = decode(item:sub(#prefix + 1))
      if raw and same(raw, expected) then return true end
    end
  end
  return false
end

local function need(req, name, what)
  local v = req.headers[name]
  if v == nil or v == "" then return nil, ("the %s header is missing"):format(what) end
  return v
end

---------------------------------------------------------------- MLflow OSS 3

-- Checks a signature over '{delivery}.{timestamp}.{body}' (MLflow's signed string, which the
-- generic source takes too): the delivery id and timestamp headers, then `signature` matched
-- against the HMAC as `prefix` + `decode`d text.
local function signed_delivery(req, secret, id_header, ts_header, signature, prefix, decode, pattern)
  local id, why = need(req, id_header:lower(), id_header)
  if not id then return false, why end
  local ts
  ts, why = need(req, ts_header:lower(), ts_header)
  if not ts then return false, why end
  return any_matches(req.headers[signature], hmac(secret, id .. "." .. ts .. "." .. req.body), prefix, decode, pattern)
end

-- mlflow/webhooks/delivery.py: X-MLflow-Signature "v1,<base64 HMAC-SHA256 of
-- '{delivery_id}.{timestamp}.{payload}'>", X-MLflow-Delivery-Id (a UUID),
-- X-MLflow-Timestamp (unix seconds); the body {"entity", "action", "timestamp", "data"}.
M.mlflow = {
  header = "x-mlflow-signature", header_name = "X-MLflow-Signature",
  verify = function(req, secret)
    return signed_delivery(req, secret, "X-MLflow-Delivery-Id", "X-MLflow-Timestamp", "x-mlflow-signature", "v1,",
      from_base64, "[^%s]+")
  end,
  delivery = function(req) return req.headers["x-mlflow-delivery-id"] end,
  timestamp = function(req) return tonumber(req.headers["x-mlflow-timestamp"]) end,
  event = function(_, p)
    if type(p.entity) ~= "string" or type(p.action) ~= "string" then return nil end
    return p.entity .. "." .. p.action
  end,
  sign = function(secret, body, o)
    return {
      ["X-MLflow-Signature"] = "v1," .. to_base64(hmac(secret, o.delivery .. "." .. o.timestamp .. "." .. body)),
      ["X-MLflow-Delivery-Id"] = o.delivery, ["X-MLflow-Timestamp"] = tostring(o.timestamp),
    }
  end,
}

---------------------------------------------------------------- Azure Databricks registry webhooks

-- "Workspace Model Registry webhooks", Security: X-Databricks-Signature is the hex HMAC-SHA256
-- of the body under the webhook's shared secret. No delivery header: the body holds
-- webhook_id and event_timestamp (ms), so its SHA-256 names the delivery, and a retry of the
-- same event is the same body.
M.databricks = {
  header = "x-databricks-signature", header_name = "X-Databricks-Signature",
  verify = function(req, secret)
    return any_matches(req.headers["x-databricks-signature"], hmac(secret, req.body), "", from_hex, "[^%s,]+")
  end,
  delivery = function(req) return "sha256:" .. to_hex(native.sha256(req.body)) end,
  timestamp = function(_, p) return type(p.event_timestamp) == "number" and p.event_timestamp / 1000 or nil end,
  event = function(_, p) return type(p.event) == "string" and p.event or nil end,
  sign = function(secret, body) return { ["X-Databricks-Signature"] = to_hex(hmac(secret, body)) } end,
}

---------------------------------------------------------------- GitHub

-- "Validating webhook deliveries": X-Hub-Signature-256 "sha256=<hex HMAC-SHA256 of the body>",
-- X-GitHub-Delivery (a GUID), X-GitHub-Event; the action, when any, in the body. GitHub signs
-- no time: replays are refused by delivery id alone.
M.github = {
  header = "x-hub-signature-256", header_name = "X-Hub-Signature-256",
  verify = function(req, secret)
    return any_matches(req.headers["x-hub-signature-256"], hmac(secret, req.body), "sha256=", from_hex, "[^%s,]+")
  end,
  delivery = function(req) return req.headers["x-github-delivery"] end,
  timestamp = function() return nil end,
  event = function(req, p) return req.headers["x-github-event"], type(p.action) == "string" and p.action or nil end,
  sign = function(secret, body, o)
    return { ["X-Hub-Signature-256"] = "sha256=" .. to_hex(hmac(secret, body)), ["X-GitHub-Delivery"] = o.delivery,
             ["X-GitHub-Event"] = o.event }
  end,
}

---------------------------------------------------------------- generic (ours)

-- docs/serve.md "The generic source": X-Hoist-Signature "sha256=<hex HMAC-SHA256 of
-- '{delivery}.{timestamp}.{body}'>", X-Hoist-Delivery, X-Hoist-Timestamp (unix seconds),
-- X-Hoist-Event; the same signed string as MLflow's, hex as GitHub's.
M.generic = {
  header = "x-hoist-signature", header_name = "X-Hoist-Signature",
  verify = function(req, secret)
    return signed_delivery(req, secret, "X-Hoist-Delivery", "X-Hoist-Timestamp", "x-hoist-signature", "sha256=",
      from_hex, "[^%s,]+")
  end,
  delivery = function(req) return req.headers["x-hoist-delivery"] end,
  timestamp = function(req) return tonumber(req.headers["x-hoist-timestamp"]) end,
  event = function(req, p)
    local e = req.headers["x-hoist-event"]
    if e == nil and type(p.event) == "string" then e = p.event end
    return e, type(p.action) == "string" and p.action or nil
  end,
  sign = function(secret, body, o)
    return {
      ["X-Hoist-Signature"] = "sha256=" .. to_hex(hmac(secret, o.delivery .. "." .. o.timestamp .. "." .. body)),
      ["X-Hoist-Delivery"] = o.delivery, ["X-Hoist-Timestamp"] = tostring(o.timestamp), ["X-Hoist-Event"] = o.event,
    }
  end,
}

M.names = { "mlflow", "databricks", "github", "generic" }

return M
