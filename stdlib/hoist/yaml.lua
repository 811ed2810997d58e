--- hoist.yaml: YAML text <-> Lua values (yaml-cpp underneath), for Kubernetes manifests and
--- kubeconfigs. The same values as hoist.json: `hoist.yaml.null` is `hoist.json.null`, the
--- array/object markers are shared and 64-bit integers become int64_t cdata.
---
--- Plain (unquoted) scalars are typed the YAML 1.2 core way: `true`/`false`, `null`/`~`/empty,
--- integers, floats; a quoted scalar is always a string. Pitfall: `version: 1.10` is the
--- number 1.1; write `version: "1.10"`. The full rules: docs/json-yaml.md.
local native = require "hoist.native.yaml"
local json = require "hoist.json"

---@class hoist.yaml
local M = {}

--- The same sentinel as hoist.json.null.
---@type userdata
M.null = json.null
M.array = json.array
M.object = json.object
M.kind = json.kind

--- Encodes one value as a block-style YAML document ending in "\n" (no "---" marker). Keys
--- are sorted; a string that would read back as another type ("1.10", "true", "yes", "null",
--- "0755", "") is double-quoted; multi-line text ending in one newline is written as a
--- literal block (`|`). Raises invalid_argument naming the path like hoist.json.encode
--- (NaN and infinity are allowed: `.nan`, `.inf`).
---@param value any
---@return string
function M.encode(value)
  return native.encode(value)
end

--- Encodes a list of documents as one stream, separated by "---" lines.
---@param documents any[]
---@return string
function M.encode_all(documents)
  return native.encode_all(documents)
end

--- Decodes a YAML stream that holds at most one document and returns its value (nil for an
--- empty stream). A stream with several documents raises invalid_argument: use decode_all.
--- Malformed text raises invalid_argument with "line L, column C" in its message and
--- details {line=, column=, reason=}.
---@param text string
---@return any
function M.decode(text)
  return native.decode(text)
end

--- Decodes every document of a YAML stream (`---` separated) and returns them as a list, in
--- order; empty documents (a trailing `---`) and bare nulls are skipped, as kubectl does.
--- Always a list, even for one document.
---@param text string
---@return any[]
function M.decode_all(text)
  return native.decode_all(text)
end

return M
