-- Build -> Trivy gate on CRITICAL -> push to ACR with GitHub OIDC federation (no client
-- secret) -> `helm upgrade --install` of examples/charts/app with values.prod.yaml -> hoist's
-- tracking of the release's rollout (in place of `kubectl rollout status --timeout=300s`).
-- The image is built and staged in the runner's local registry first, so an image the gate
-- refuses never reaches ACR. A failed rollout rolls the release back (`helm rollback` to the
-- previous revision, journaled before the upgrade). Every run ends with a notification
-- (hoist.notify: HOIST_NOTIFY_SLACK, HOIST_NOTIFY_TEAMS, HOIST_NOTIFY_WEBHOOK or HOIST_NOTIFY)
-- on success, failure and rollback, with the rollout's reason when it failed.
--
--   # in GitHub Actions with `permissions: id-token: write` and AZURE_CLIENT_ID/AZURE_TENANT_ID
--   hoist run examples/aks-helm/pipeline.lua --set acr=myacr.azurecr.io --set tag=$GITHUB_SHA \
--     --set workload_client_id=<client id of the app's managed identity>
local pipeline, helm, notify = hoist.pipeline, hoist.k8s.helm, hoist.notify

local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
local root = here .. "/../.."

return pipeline.define {
  name = "aks-helm",
  version = "1.1.0",
  requires = ">=0.1",
  description = "Build, gate on CRITICAL, push to ACR with OIDC, helm upgrade --install, track the rollout",
  notify = function(p)
    return notify.from_params(p, { verify_stages = { "deploy" }, facts = function(result)
      local o = result.outputs
      return { target = "aks", service = p.release, image = p.acr .. "/" .. p.repository .. ":" .. p.tag,
               digest = o.push and o.push.digest, namespace = p.namespace, revision = o.deploy and o.deploy.revision }
    end })
  end,
  params = notify.with_params {
    acr = { type = "string", required = true, description = "ACR login server (myacr.azurecr.io)" },
    repository = { type = "string", default = "web", description = "Repository in ACR" },
    tag = { type = "string", required = true, pattern = "[%w][%w%._%-]*", description = "Image tag (the commit)" },
    staging = { type = "string", default = "127.0.0.1:5000", description = "The runner's local registry the image is staged in" },
    context = { type = "string", default = root .. "/examples/app", description = "Build context" },
    build_args = { type = "map", default = {}, description = "docker build args" },
    scan = { type = "string", default = "required", allowed = { "required", "if_available", "off" }, description = "Trivy gate mode" },
    chart = { type = "string", default = root .. "/examples/charts/app", description = "Helm chart" },
    values = { type = "string", default = here .. "/values.prod.yaml", description = "Values file" },
    release = { type = "string", default = "web", description = "Helm release" },
    namespace = { type = "string", default = "web", description = "Namespace (created when missing)" },
    workload_client_id = { type = "string", default = "", description = "Client id for Azure Workload Identity" },
    image_pull_secret = { type = "string", description = "docker-registry Secret for pulls (not on AKS: the kubelet identity pulls)" },
    kubeconfig = { type = "string", description = "Kubeconfig (default $KUBECONFIG); not with aks_cluster" },
    aks_resource_group = { type = "string", description = "The AKS cluster's resource group (with aks_cluster)" },
    aks_cluster = { type = "string", description = "An AKS cluster: its kubeconfig comes from ARM with the same OIDC credential (az aks get-credentials), never written to ~/.kube" },
    aks_admin = { type = "boolean", default = false, description = "listClusterAdminCredential instead of the user credential (which runs kubelogin)" },
    timeout = { type = "number", default = 600, description = "helm --timeout and rollout budget, seconds" },
    ready_timeout = { type = "number", description = "Fail the rollout when a running pod stays unready this long, seconds (default: only the timeout)" },
  },
  stages = {
    { name = "build", run = function(ctx)
      local p = ctx.params
      local staged = ("%s/%s:%s"):format(p.staging, p.repository, p.tag)
      hoist.docker.build { context = p.context, tags = { staged }, build_args = p.build_args }
      return { staged = staged, digest = hoist.docker.push(staged).digest }
    end },
    { name = "scan", run = function(ctx)
      local b = ctx.outputs.build
      local r = hoist.trivy.gate_scan { image = b.staged, digest = b.digest, mode = ctx.params.scan, fail_on = { "CRITICAL" } }
      if r.ran then ctx:summary("Scan", { hoist.policy.markdown(r) }) end
      return { ran = r.ran }
    end },
    { name = "push", run = function(ctx)
      local p, b = ctx.params, ctx.outputs.build
      -- GitHub OIDC federation: ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN + AZURE_CLIENT_ID/TENANT_ID, no secret
      local cred = hoist.azure.credential { source = "oidc" }
      hoist.azure.acr.login { registry = p.acr, credential = cred }
      local target = ("%s/%s:%s"):format(p.acr, p.repository, p.tag)
      local r = hoist.registry.copy { from = p.staging .. "/" .. p.repository .. "@" .. b.digest, to = target }
      ctx:summary("Image", { target .. "@" .. r.digest })
      return { image = target, digest = r.digest }
    end },
    { name = "deploy", run = function(ctx)
      local p = ctx.params
      local values = { image = { repository = p.acr .. "/" .. p.repository, tag = p.tag },
                       serviceAccount = { clientId = p.workload_client_id } }
      if p.image_pull_secret then values.imagePullSecret = p.image_pull_secret end
      -- on AKS: the cluster's kubeconfig from ARM with the push's OIDC credential, fetched
      -- again by a later `hoist rollback` (it is never journaled nor left on disk)
      local aks = p.aks_cluster and { resource_group = p.aks_resource_group, cluster = p.aks_cluster, admin = p.aks_admin,
                                      credential = "oidc" } or nil
      local r = helm.upgrade { release = p.release, chart = p.chart, namespace = p.namespace, create_namespace = true,
                               values_files = { p.values }, values = values, timeout = p.timeout, kubeconfig = p.kubeconfig,
                               aks = aks, ready_timeout = p.ready_timeout, ctx = ctx }
      for _, w in ipairs(r.workloads) do ctx:summary("Rollout", { ("%s (%.1fs)"):format(w.message, w.duration) }) end
      return { revision = r.revision, previous = r.previous }
    end },
  },
}
