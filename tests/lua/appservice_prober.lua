-- A prober run as a child by the App Service and Container Apps tests (not a test itself):
-- GETs PROBE_URL through the proxy variables of its environment until the file PROBE_STOP
-- exists, then writes {ok, failed, statuses} as JSON to PROBE_OUT.
local url, stop, out = os.getenv("PROBE_URL"), os.getenv("PROBE_STOP"), os.getenv("PROBE_OUT")
local ok, failed, statuses = 0, 0, {}
while not hoist.fs.exists(stop) do
  local good, r = pcall(hoist.http.request, { url = url, timeout = 5 })
  if good and r.status == 200 then ok = ok + 1
  else
    failed = failed + 1
    local why = good and tostring(r.status) or tostring(hoist.is_error(r) and r.code or r)
    statuses[why] = (statuses[why] or 0) + 1
  end
  hoist.sleep(0.1)
end
hoist.fs.write_file(out, hoist.json.encode { ok = ok, failed = failed, statuses = statuses })
