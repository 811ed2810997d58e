-- hello.lua: a tour of the core primitives on this machine, no cloud account needed.
--   hoist run examples/hello.lua [--set url=http://127.0.0.1:5000/v2/]
local url = hoist.args.url or "http://127.0.0.1:5000/v2/"

hoist.log.info("hello from hoist " .. hoist.version)

-- processes: argv, never a shell string; a non-zero exit is data unless check = true
local uname = hoist.exec { "uname", "-sr", check = true }
hoist.log.info("kernel: " .. uname.stdout:gsub("%s+$", ""))

-- concurrency: three sleeps of 0.3 s and an HTTP request run at the same time
local started = hoist.now()
local _, _, _, probe = hoist.parallel(
  function() return hoist.exec { "sleep", "0.3" } end,
  function() return hoist.exec { "sleep", "0.3" } end,
  function() return hoist.exec { "sleep", "0.3" } end,
  function()
    local ok, res = pcall(hoist.http.request, { url = url, timeout = 2 })
    if ok then return ("%s answered %d"):format(url, res.status) end
    return ("%s: %s"):format(url, res.code) -- unavailable when nothing listens there
  end)
hoist.log.info(("parallel: 3 x sleep 0.3 and one request took %.2f s"):format(hoist.now() - started))
hoist.log.info("http: " .. probe)

-- secrets never reach the output, whatever form they take
local token = hoist.secret("hello-demo-token-42")
hoist.exec { "echo", "the child printed " .. token, stream = true }

-- tools this machine has
for _, tool in ipairs { "docker", "kubectl", "az", "trivy" } do
  hoist.log.info(("%-8s %s"):format(tool, hoist.which(tool) or "not found"))
end

return { ok = true }
