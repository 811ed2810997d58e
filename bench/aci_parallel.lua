-- bench/aci_parallel.lua (run by bench/azure.sh): ACI deploys from one hoist process, one
-- alone then `n` at once as hoist.spawn tasks, against the Azure emulator (real containers).
-- Each deploy is hoist.azure.aci.create_or_update: the PUT with its long-running operation
-- (the emulator pulls and starts the container inside it), then the instance view until the
-- group runs (stable = 0: the first Running, so the policy's stability window does not pad the
-- figures). Then the engine underneath alone: `docker run -d` of the same image, 1 then n at
-- once. Everything it created is deleted at the end.
--   hoist run bench/aci_parallel.lua --set n=10 --set image=REG/REPO:TAG --set user=U
--     --set resource_group=RG        (BENCH_REGISTRY_PASSWORD in the environment)
local a = hoist.args
local n = tonumber(a.n or "10")
local aci = hoist.azure.aci
local cred = hoist.azure.credential { source = "client_secret" }
local rg = a.resource_group
local registry = { server = hoist.image.parse(a.image).registry, username = a.user,
                   password = hoist.secret(os.getenv("BENCH_REGISTRY_PASSWORD") or "") }
local HTTPD = { "sh", "-c", "echo ok > /tmp/index.html; exec httpd -f -p 8000 -h /tmp" }
local tag = ("%x"):format(os.time() % 0x100000)

hoist.azure.resource_groups.ensure { name = rg, location = "westeurope", credential = cred }
hoist.azure.providers.ensure { namespace = "Microsoft.ContainerInstance", credential = cred, poll_interval = 1 }

-- seconds of the day of an ARM timestamp ("2026-12-01T15:44:35.1234567Z")
local function clock(iso)
  local h, m, sec = tostring(iso):match("T(%d+):(%d+):([%d.]+)")
  return h and (tonumber(h) * 3600 + tonumber(m) * 60 + tonumber(sec)) or nil
end

-- What the emulator spent on Docker for the group: from its "Pulling" event (the login and
-- pull start) to its "Started" event (docker run returned), from the instance view.
local function docker_span(group)
  local first, last
  for _, c in ipairs(((group or {}).properties or {}).containers or {}) do
    for _, e in ipairs(((c.properties or {}).instanceView or {}).events or {}) do
      if e.name == "Pulling" then first = clock(e.firstTimestamp) end
      if e.name == "Started" then last = clock(e.lastTimestamp) end
    end
  end
  return (first and last) and (last - first) or 0 / 0
end

-- one deploy: {put = s, wait = s, total = s, docker = s}
local function deploy(name)
  local t0 = hoist.now()
  local o = { name = name, resource_group = rg, credential = cred, image = a.image, cpu = 0.5, memory = 0.5,
              ports = { 8000 }, dns_label = name, command = HTTPD, registry = registry, wait = false }
  aci.create_or_update(o)
  local t1 = hoist.now()
  local group = aci.wait_running { name = name, resource_group = rg, credential = cred, stable = 0 }
  local t2 = hoist.now()
  return { put = t1 - t0, wait = t2 - t1, total = t2 - t0, docker = docker_span(group) }
end

-- runs fn(i) for i = 1..count at once; returns the results and the wall time
local function at_once(count, fn)
  local t0 = hoist.now()
  local tasks, out = {}, {}
  for i = 1, count do tasks[i] = hoist.spawn(fn, i) end
  for i, task in ipairs(tasks) do out[i] = task:wait() end
  return out, hoist.now() - t0
end

local names = {}
local function name_of(i)
  local name = ("bench-%s-%d"):format(tag, i)
  names[#names + 1] = name
  return name
end

local ok, err = pcall(function()
  local single = deploy(name_of(0))
  local many, wall = at_once(n, function(i) return deploy(name_of(i)) end)
  local function row(label, d)
    print(("%-14s %8.2f s %8.2f s %8.2f s %8.2f s %8.2f s"):format(label, d.put, d.wait, d.total, d.docker,
      d.total - d.docker))
  end
  print(("%-14s %10s %10s %10s %10s %10s"):format("deploy", "PUT+LRO", "wait", "total", "docker", "the rest"))
  row("alone", single)
  local slowest, sum_put, sum_wait, sum_docker = 0, 0, 0, 0
  for i, d in ipairs(many) do
    row(("parallel %d"):format(i), d)
    slowest, sum_put, sum_wait = math.max(slowest, d.total), sum_put + d.put, sum_wait + d.wait
    sum_docker = sum_docker + d.docker
  end
  print(("one deploy: %.2f s (docker %.2f s); %d at once: %.2f s wall (slowest %.2f s; mean PUT+LRO %.2f s, "
    .. "mean wait %.2f s, mean docker %.2f s); ratio %.2fx (goal < 1.5x)"):format(single.total, single.docker, n, wall,
    slowest, sum_put / n, sum_wait / n, sum_docker / n, wall / single.total))
  print("(docker: the emulator's pull and `docker run` of the group, from its Pulling to its Started event; the rest:"
    .. " hoist's client, the emulator's HTTP and the polls' interval)")

  -- the engine underneath, without the emulator and without hoist's client
  local image = os.getenv("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"
  local function docker_run(i)
    local t0 = hoist.now()
    local r = hoist.exec { "docker", "run", "-d", "--rm", "--name", ("bench-docker-%s-%d"):format(tag, i),
                           "-p", "127.0.0.1::8000", "--memory", "512m", image, unpack(HTTPD) }
    if r.code ~= 0 then error("docker run: " .. r.stderr, 0) end
    return hoist.now() - t0
  end
  local function docker_rm(count)
    local argv = { "docker", "rm", "-f" }
    for i = 0, count do argv[#argv + 1] = ("bench-docker-%s-%d"):format(tag, i) end
    hoist.exec(argv)
  end
  local one = docker_run(0)
  docker_rm(0)
  local _, dwall = at_once(n, docker_run)
  docker_rm(n)
  print(("docker run -d alone: %.2f s; %d at once: %.2f s wall; ratio %.2fx"):format(one, n, dwall, dwall / one))
end)

local _, t = at_once(#names, function(i) return pcall(aci.delete, { name = names[i], resource_group = rg, credential = cred }) end)
pcall(hoist.azure.request, { method = "DELETE", path = ("/subscriptions/%s/resourcegroups/%s")
  :format(hoist.azure.subscription(nil, cred), rg), credential = cred })
print(("(deleted %d container groups in %.1f s)"):format(#names, t))
if not ok then error(err, 0) end
