-- Shared watches (kube:watch{shared = true}) and the rollouts built on them, against
-- tests/k8s/fake_apiserver.py: one stream per kind and namespace whatever the number of
-- watches, each watch filtered by its own selectors, a late watch served from what the stream
-- has shown, a dropped stream and a 410 reaching every watch, and the stream closed with the
-- last watch; two rollouts in one namespace read one stream per kind and get their own verdicts.
local t = require "hoist.test"
local k8s = hoist.k8s

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local fake = dofile(here .. "/k8s_fake.lua")
local control, requests = fake.control, fake.requests

local kube
local function client()
  kube = kube or k8s.client { kubeconfig = fake.kubeconfig("shared") }
  return kube
end

-- Requests to `path` so far: watches (?watch=1) and plain lists.
local function asked(path)
  local watches, lists = 0, 0
  for _, r in ipairs(requests()) do
    if r.method == "GET" and r.path == path then
      if r.query.watch == "1" then watches = watches + 1 else lists = lists + 1 end
      t.eq(r.query.labelSelector, nil, "a shared stream is namespace-wide")
      t.eq(r.query.fieldSelector, nil, "a shared stream is namespace-wide")
    end
  end
  return watches, lists
end

local function pod(name, app, status)
  client():create { apiVersion = "v1", kind = "Pod", metadata = { name = name, labels = { app = app } }, status = status }
end

local function names(ev)
  local out = {}
  for _, item in ipairs(ev.object.items) do out[#out + 1] = item.metadata.name end
  table.sort(out)
  return table.concat(out, ",")
end

local function watch(selector)
  return client():watch { kind = "Pod", api_version = "v1", label_selector = selector, shared = true }
end

t.case("shared watch: one stream for two watches, each filtered by its selector; a late one starts from the stream's objects", function()
  control("reset")
  pod("a-1", "a")
  pod("b-1", "b")
  local wa, wb = watch("app=a"), watch("app in (b, c)")
  local la, lb = wa:next(5), wb:next(5)
  t.eq(la.type, "LIST")
  t.eq(names(la), "a-1")
  t.eq(names(lb), "b-1")
  pod("a-2", "a")
  local ev = wa:next(5)
  t.eq(ev.type, "ADDED")
  t.eq(ev.object.metadata.name, "a-2")
  t.eq(wb:next(0.3), nil, "app=a is not wb's")
  -- b-1 moves from wb's selector to wa's: DELETED for one, ADDED for the other, as a
  -- filtered watch on the server says it
  client():patch { kind = "Pod", name = "b-1", patch = { metadata = { labels = { app = "a" } } } }
  ev = wa:next(5)
  t.eq(ev.type, "ADDED")
  t.eq(ev.object.metadata.name, "b-1")
  ev = wb:next(5)
  t.eq(ev.type, "DELETED")
  t.eq(ev.object.metadata.name, "b-1")
  local wc = watch("app=a")
  local lc = wc:next(5)
  t.eq(lc.type, "LIST")
  t.eq(names(lc), "a-1,a-2,b-1")
  t.eq(lc.object.metadata.resourceVersion, wa:info().resource_version)
  local watches, lists = asked("/api/v1/namespaces/team/pods")
  t.eq(watches, 1)
  t.eq(lists, 1, "the late watch made no request of its own")
  t.eq(client():shared_streams(), 1)
  wa:close()
  wb:close()
  t.eq(client():shared_streams(), 1, "wc still reads it")
  wc:close()
  t.eq(client():shared_streams(), 0, "closed with the last watch")
  -- a new watch opens a new stream
  local wd = watch("app=a")
  t.eq(names(wd:next(5)), "a-1,a-2,b-1")
  t.eq(client():shared_streams(), 1)
  -- the new stream's WATCH request follows its LIST, whose objects wd has already read: wait
  -- for it to reach the server (seen once under load: the count was read first)
  local watched = asked("/api/v1/namespaces/team/pods")
  for _ = 1, 100 do
    if watched >= 2 then break end
    hoist.sleep(0.05)
    watched = asked("/api/v1/namespaces/team/pods")
  end
  wd:close()
  t.eq(watched, 2)
end)

t.case("shared watch: a dropped stream and a 410 reach every watch on it", function()
  control("reset")
  pod("a-1", "a")
  local wa, wb = watch("app=a"), watch("")
  t.eq(wa:next(5).type, "LIST")
  t.eq(wb:next(5).type, "LIST")
  control("drop")
  pod("a-2", "a")
  t.eq(wa:next(5).object.metadata.name, "a-2")
  t.eq(wb:next(5).object.metadata.name, "a-2")
  control("compact")
  control("drop")
  -- the relist after 410 Gone: a new LIST for each watch, then the stream goes on
  for _, w in ipairs { wa, wb } do
    local ev = w:next(5)
    while ev and ev.type ~= "LIST" do ev = w:next(5) end
    t.ok(ev, "a LIST after the 410")
    t.eq(names(ev), "a-1,a-2")
    t.eq(w:info().relists, 1)
  end
  pod("a-3", "a")
  t.eq(wa:next(5).object.metadata.name, "a-3")
  t.eq(wb:next(5).object.metadata.name, "a-3")
  wa:close()
  wb:close()
end)

t.case("shared watch: selectors hoist cannot evaluate, and a resource_version, are refused", function()
  t.raises(function() client():watch { kind = "Pod", field_selector = "spec.nodeName=n1", shared = true } end,
    "invalid_argument", "the field 'spec.nodeName' cannot be evaluated here")
  t.raises(function() client():watch { kind = "Pod", label_selector = "replicas>2", shared = true } end,
    "invalid_argument", "label selector 'replicas>2'.*> and < are not supported")
  t.raises(function() client():watch { kind = "Pod", label_selector = "app=a,,b", shared = true } end,
    "invalid_argument", "an empty requirement")
  t.raises(function() client():watch { kind = "Pod", resource_version = "5", shared = true } end,
    "invalid_argument", "resource_version '5' cannot be given")
  t.eq(client():shared_streams(), 0)
end)

-- Deployment `name` at revision 2 with its ReplicaSet `name-abc`.
local progressing = { observedGeneration = 1, replicas = 2, updatedReplicas = 1, readyReplicas = 1, availableReplicas = 1 }
local complete = { observedGeneration = 1, replicas = 2, updatedReplicas = 2, readyReplicas = 2, availableReplicas = 2 }
local function deployment(name)
  local rev = { ["deployment.kubernetes.io/revision"] = "2" }
  client():create { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = name, annotations = rev },
                    spec = { replicas = 2, selector = { matchLabels = { app = name } } }, status = progressing }
  client():create { apiVersion = "apps/v1", kind = "ReplicaSet",
                    metadata = { name = name .. "-abc", labels = { app = name }, annotations = rev,
                                 ownerReferences = { { kind = "Deployment", name = name, uid = "uid-deployments-" .. name } } } }
  client():create { apiVersion = "v1", kind = "Pod",
                    metadata = { name = name .. "-abc-1", labels = { app = name },
                                 ownerReferences = { { kind = "ReplicaSet", name = name .. "-abc", uid = "uid-replicasets-" .. name .. "-abc" } } },
                    status = { phase = "Pending" } }
end

local function event(about, message)
  client():create { apiVersion = "v1", kind = "Event", metadata = { name = about .. "." .. message:sub(1, 6):lower() },
                    type = "Warning", reason = "Failed", involvedObject = { kind = "Pod", name = about }, message = message }
end

local kinds = { "/apis/apps/v1/namespaces/team/deployments", "/apis/apps/v1/namespaces/team/replicasets",
                "/api/v1/namespaces/team/pods", "/api/v1/namespaces/team/events" }

t.case("rollout: two rollouts in one namespace read one stream per kind, each with its own verdict and evidence", function()
  control("reset")
  deployment("one")
  deployment("two")
  local a = hoist.spawn(k8s.rollout, { name = "one", client = client(), timeout = 30 })
  local b = hoist.spawn(function() return pcall(k8s.rollout, { name = "two", client = client(), timeout = 30 }) end)
  hoist.sleep(0.3)
  t.eq(a:status(), "running")
  t.eq(b:status(), "running")
  t.eq(client():shared_streams(), 4)
  event("one-abc-1", "Back-off restarting one")
  event("two-abc-1", "Failed to pull image two")
  client():patch { kind = "Pod", name = "two-abc-1", patch = { status = { phase = "Pending", containerStatuses = { {
    name = "app", ready = false, restartCount = 0, state = { waiting = { reason = "ImagePullBackOff", message = "Back-off pulling image" } } } } } } }
  client():patch { kind = "Deployment", name = "one", patch = { status = complete } }
  t.eq(a:wait().verdict, "done")
  local ok, err = b:wait()
  t.eq(ok, false)
  t.eq(err.details.reason, "ImagePullBackOff")
  t.eq(err.details.pod, "two-abc-1")
  t.eq(#err.details.events, 1, "only two's events")
  t.eq(err.details.events[1].object, "Pod/two-abc-1")
  for _, path in ipairs(kinds) do t.eq((asked(path)), 1, path) end
  t.eq(client():shared_streams(), 0, "the streams closed with the rollouts")
end)

t.case("rollout: a dropped stream and a 410 under two rollouts lose neither verdict", function()
  control("reset")
  deployment("left")
  deployment("right")
  local a = hoist.spawn(k8s.rollout, { name = "left", client = client(), timeout = 30 })
  local b = hoist.spawn(k8s.rollout, { name = "right", client = client(), timeout = 30 })
  hoist.sleep(0.3)
  control("drop")
  client():patch { kind = "Deployment", name = "left", patch = { status = complete } }
  hoist.sleep(0.2)
  control("compact")
  control("drop")
  client():patch { kind = "Deployment", name = "right", patch = { status = complete } }
  t.eq(a:wait().verdict, "done")
  t.eq(b:wait().verdict, "done")
end)

t.case("rollout: a shared stream trailing the rollout's own read never passes for its verdict", function()
  control("reset")
  deployment("first")
  deployment("next")
  client():patch { kind = "Deployment", name = "next", patch = { status = complete } }  -- generation 1, rolled out
  local a = hoist.spawn(k8s.rollout, { name = "first", client = client(), timeout = 30 })
  hoist.sleep(0.3)  -- the streams are open and hold "next" at generation 1
  -- the streams break off and their reconnections are held back a second (429, Retry-After:
  -- 1): meanwhile "next" gets a new spec (generation 2, not yet observed) and its rollout
  -- starts from what the streams hold
  control("throttle?n=4")
  control("drop")
  hoist.sleep(0.3)
  client():patch { kind = "Deployment", name = "next", patch = { spec = { replicas = 3 } } }
  local b = hoist.spawn(k8s.rollout, { name = "next", client = client(), timeout = 30 })
  hoist.sleep(0.5)
  t.eq(b:status(), "running", "generation 1's status is not generation 2's verdict")
  client():patch { kind = "Deployment", name = "next", patch = { status = {
    observedGeneration = 2, replicas = 3, updatedReplicas = 3, readyReplicas = 3, availableReplicas = 3 } } }
  client():patch { kind = "Deployment", name = "first", patch = { status = complete } }
  t.eq(b:wait().verdict, "done")
  t.eq(a:wait().verdict, "done")
end)

t.case("client: max_requests bounds the requests in flight; every request is answered, a cancelled wait frees its turn", function()
  control("reset")
  local c = k8s.client { kubeconfig = fake.kubeconfig("one-at-a-time"), max_requests = 1 }
  for i = 1, 6 do c:create { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "cm" .. i } } end
  local tasks = {}
  for i = 1, 6 do tasks[i] = hoist.spawn(c.get, c, { kind = "ConfigMap", api_version = "v1", name = "cm" .. i }) end
  hoist.sleep(0.005)  -- each has started: one in flight, the others waiting their turn
  tasks[3]:cancel()
  tasks[4]:cancel()
  for i, task in ipairs(tasks) do
    if i ~= 3 and i ~= 4 then t.eq(task:wait().metadata.name, "cm" .. i) end
  end
  t.eq(c:get { kind = "ConfigMap", api_version = "v1", name = "cm3" }.metadata.name, "cm3")
  t.raises(function() k8s.client { kubeconfig = fake.kubeconfig("none"), max_requests = 0 } end,
    "invalid_argument", "max_requests must be at least 1, got 0")
end)
