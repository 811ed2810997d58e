// Status classification: how a rollout stands, from one object. Deployment, StatefulSet and
// DaemonSet follow kubectl's `rollout status` (polymorphichelpers/rollout_status.go) check
// for check and word for word; Pods and Jobs have the failure reasons a rollout must stop on.
// Where hoist deliberately differs from kubectl or from gitops-engine, the comment says why.
#include <hoist/k8s.hpp>

#include <string>

namespace hoist::k8s {
namespace {

using nlohmann::json;

const json& at(const json& j, std::initializer_list<const char*> path) {
  static const json null;
  const json* cur = &j;
  for (const char* key : path) {
    if (!cur->is_object()) return null;
    auto it = cur->find(key);
    if (it == cur->end()) return null;
    cur = &*it;
  }
  return *cur;
}

long long num(const json& j, std::initializer_list<const char*> path, long long fallback = 0) {
  const json& v = at(j, path);
  return v.is_number() ? v.get<long long>() : fallback;
}

bool has_num(const json& j, std::initializer_list<const char*> path) { return at(j, path).is_number(); }

std::string str(const json& j, std::initializer_list<const char*> path) {
  const json& v = at(j, path);
  return v.is_string() ? v.get<std::string>() : "";
}

// status.conditions[type == t], or null.
const json& condition(const json& obj, std::string_view type) {
  static const json null;
  const json& conds = at(obj, {"status", "conditions"});
  if (!conds.is_array()) return null;
  for (const auto& c : conds)
    if (c.is_object() && c.value("type", "") == type) return c;
  return null;
}

bool condition_true(const json& obj, std::string_view type) {
  const json& c = condition(obj, type);
  return c.is_object() && c.value("status", "") == "True";
}

std::string qt(const std::string& s) { return "\"" + s + "\""; }
std::string n(long long v) { return std::to_string(v); }

Classification make(Verdict v, std::string reason, std::string message) {
  Classification c;
  c.verdict = v;
  c.reason = std::move(reason);
  c.message = std::move(message);
  return c;
}

bool observed(const json& obj) {
  return num(obj, {"metadata", "generation"}) <= num(obj, {"status", "observedGeneration"});
}

std::string strategy(const json& obj) {
  std::string t = str(obj, {"spec", "updateStrategy", "type"});
  return t.empty() ? "RollingUpdate" : t;  // the API server's default
}

// ------------------------------------------------------------------ workloads

Classification deployment(const json& d) {
  std::string name = str(d, {"metadata", "name"});
  long long updated = num(d, {"status", "updatedReplicas"}), replicas = num(d, {"status", "replicas"});
  long long available = num(d, {"status", "availableReplicas"});
  Classification c;
  if (!observed(d)) {
    c = make(Verdict::progressing, "SpecNotObserved", "Waiting for deployment spec update to be observed...");
  } else if (str(condition(d, "Progressing"), {"reason"}) == "ProgressDeadlineExceeded") {
    c = make(Verdict::failed, "ProgressDeadlineExceeded", "deployment " + qt(name) + " exceeded its progress deadline");
    c.details["condition"] = condition(d, "Progressing");
  } else if (has_num(d, {"spec", "replicas"}) && updated < num(d, {"spec", "replicas"})) {
    c = make(Verdict::progressing, "Updating",
             "Waiting for deployment " + qt(name) + " rollout to finish: " + n(updated) + " out of " +
                 n(num(d, {"spec", "replicas"})) + " new replicas have been updated...");
  } else if (replicas > updated) {
    c = make(Verdict::progressing, "TerminatingOld",
             "Waiting for deployment " + qt(name) + " rollout to finish: " + n(replicas - updated) +
                 " old replicas are pending termination...");
  } else if (available < updated) {
    c = make(Verdict::progressing, "WaitingAvailable",
             "Waiting for deployment " + qt(name) + " rollout to finish: " + n(available) + " of " + n(updated) +
                 " updated replicas are available...");
  } else {
    c = make(Verdict::done, "Complete", "deployment " + qt(name) + " successfully rolled out");
  }
  // kubectl waits on a paused Deployment until its timeout; nothing will change until it is
  // resumed, so an unfinished paused rollout is `suspended` (as gitops-engine says).
  if (c.verdict == Verdict::progressing && at(d, {"spec", "paused"}) == true)
    c = make(Verdict::suspended, "Paused", "deployment " + qt(name) + " is paused: " + c.message);
  c.progress = {{"replicas", num(d, {"spec", "replicas"}, 1)}, {"current", replicas}, {"updated", updated},
                {"ready", num(d, {"status", "readyReplicas"})}, {"available", available}};
  return c;
}

Classification statefulset(const json& s) {
  long long ready = num(s, {"status", "readyReplicas"}), updated = num(s, {"status", "updatedReplicas"});
  Classification c;
  bool has_replicas = has_num(s, {"spec", "replicas"});
  long long replicas = num(s, {"spec", "replicas"}, 1);
  if (strategy(s) != "RollingUpdate") {
    // kubectl refuses ("only available for RollingUpdate strategy type"); with OnDelete the
    // pods take a new template only when deleted, so there is nothing to wait for beyond the
    // controller seeing the spec and the pods being ready (gitops-engine: Healthy).
    if (!observed(s)) c = make(Verdict::progressing, "SpecNotObserved", "Waiting for statefulset spec update to be observed...");
    else if (ready < replicas) c = make(Verdict::progressing, "WaitingReady", "Waiting for " + n(replicas - ready) + " pods to be ready...");
    else c = make(Verdict::done, "OnDelete", "statefulset updateStrategy is " + strategy(s) + ": pods take the new template when deleted");
  } else if (num(s, {"status", "observedGeneration"}) == 0 || !observed(s)) {
    c = make(Verdict::progressing, "SpecNotObserved", "Waiting for statefulset spec update to be observed...");
  } else if (has_replicas && ready < replicas) {
    c = make(Verdict::progressing, "WaitingReady", "Waiting for " + n(replicas - ready) + " pods to be ready...");
  } else if (at(s, {"spec", "updateStrategy", "rollingUpdate"}).is_object()) {
    // kubectl takes this branch whenever rollingUpdate is set (the API server defaults it, with
    // partition 0, when the strategy type is left out), with or without a partition
    bool has_partition = has_num(s, {"spec", "updateStrategy", "rollingUpdate", "partition"});
    long long partition = num(s, {"spec", "updateStrategy", "rollingUpdate", "partition"});
    if (has_replicas && has_partition && partition < replicas && updated < replicas - partition)
      c = make(Verdict::progressing, "Updating",
               "Waiting for partitioned roll out to finish: " + n(updated) + " out of " + n(replicas - partition) +
                   " new pods have been updated...");
    else
      c = make(Verdict::done, "Complete", "partitioned roll out complete: " + n(updated) + " new pods have been updated...");
  } else if (str(s, {"status", "updateRevision"}) != str(s, {"status", "currentRevision"})) {
    c = make(Verdict::progressing, "Updating",
             "waiting for statefulset rolling update to complete " + n(updated) + " pods at revision " +
                 str(s, {"status", "updateRevision"}) + "...");
  } else {
    c = make(Verdict::done, "Complete",
             "statefulset rolling update complete " + n(num(s, {"status", "currentReplicas"})) + " pods at revision " +
                 str(s, {"status", "currentRevision"}) + "...");
  }
  c.progress = {{"replicas", replicas}, {"current", num(s, {"status", "replicas"})}, {"updated", updated},
                {"ready", ready}, {"available", num(s, {"status", "availableReplicas"}, ready)}};
  return c;
}

Classification daemonset(const json& d) {
  std::string name = str(d, {"metadata", "name"});
  long long desired = num(d, {"status", "desiredNumberScheduled"});
  long long updated = num(d, {"status", "updatedNumberScheduled"}), available = num(d, {"status", "numberAvailable"});
  Classification c;
  if (!observed(d)) {
    c = make(Verdict::progressing, "SpecNotObserved", "Waiting for daemon set spec update to be observed...");
  } else if (strategy(d) != "RollingUpdate") {
    // as for a StatefulSet: kubectl refuses OnDelete; hoist waits for available pods only
    if (available < desired)
      c = make(Verdict::progressing, "WaitingAvailable",
               "Waiting for daemon set " + qt(name) + ": " + n(available) + " of " + n(desired) + " pods are available...");
    else
      c = make(Verdict::done, "OnDelete", "daemon set updateStrategy is " + strategy(d) + ": pods take the new template when deleted");
  } else if (updated < desired) {
    c = make(Verdict::progressing, "Updating",
             "Waiting for daemon set " + qt(name) + " rollout to finish: " + n(updated) + " out of " + n(desired) +
                 " new pods have been updated...");
  } else if (available < desired) {
    c = make(Verdict::progressing, "WaitingAvailable",
             "Waiting for daemon set " + qt(name) + " rollout to finish: " + n(available) + " of " + n(desired) +
                 " updated pods are available...");
  } else {
    c = make(Verdict::done, "Complete", "daemon set " + qt(name) + " successfully rolled out");
  }
  c.progress = {{"replicas", desired}, {"current", num(d, {"status", "currentNumberScheduled"})}, {"updated", updated},
                {"ready", num(d, {"status", "numberReady"})}, {"available", available}};
  return c;
}

Classification job(const json& j) {
  std::string name = str(j, {"metadata", "name"});
  Classification c;
  if (condition_true(j, "Complete")) {
    c = make(Verdict::done, "Complete", "job " + qt(name) + " completed");
  } else if (condition_true(j, "Failed")) {
    const json& f = condition(j, "Failed");
    c = make(Verdict::failed, str(f, {"reason"}).empty() ? "Failed" : str(f, {"reason"}),
             "job " + qt(name) + " failed: " + str(f, {"message"}));
  } else if (at(j, {"spec", "suspend"}) == true || condition_true(j, "Suspended")) {
    c = make(Verdict::suspended, "Suspended", "job " + qt(name) + " is suspended");
  } else {
    c = make(Verdict::progressing, "Running",
             "job " + qt(name) + ": " + n(num(j, {"status", "active"})) + " active, " +
                 n(num(j, {"status", "succeeded"})) + " succeeded, " + n(num(j, {"status", "failed"})) + " failed");
  }
  c.progress = {{"active", num(j, {"status", "active"})}, {"succeeded", num(j, {"status", "succeeded"})},
                {"failed", num(j, {"status", "failed"})}, {"completions", num(j, {"spec", "completions"}, 1)}};
  return c;
}

// ------------------------------------------------------------------ pods

// `secret "db" not found` / `configmap "cfg" not found` / `couldn't find key k in Secret ns/db`:
// which object a container's configuration is missing.
json missing_reference(const std::string& message) {
  for (const char* kind : {"secret", "configmap"}) {
    std::string head = std::string(kind) + " \"";
    auto p = message.find(head);
    if (p == std::string::npos) continue;
    auto start = p + head.size(), end = message.find('"', start);
    if (end != std::string::npos) return {{"kind", kind}, {"name", message.substr(start, end - start)}};
  }
  for (auto [word, kind] : {std::pair{" in Secret ", "secret"}, std::pair{" in ConfigMap ", "configmap"}}) {
    auto p = message.find(word);
    if (p == std::string::npos) continue;
    std::string ref = message.substr(p + std::string_view(word).size());
    ref = ref.substr(0, ref.find_first_of(" \n"));
    auto slash = ref.find('/');
    return {{"kind", kind}, {"name", slash == std::string::npos ? ref : ref.substr(slash + 1)}};
  }
  return nullptr;
}

bool waiting_failure(const std::string& reason) {
  for (const char* r : {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull",
                        "CreateContainerConfigError", "CreateContainerError"})
    if (reason == r) return true;
  return false;
}

// The first container (init containers first) whose state is a failure of its own.
std::optional<Classification> container_failure(const json& pod, const ClassifyOptions& o) {
  std::string policy = str(pod, {"spec", "restartPolicy"});
  for (const char* list : {"initContainerStatuses", "containerStatuses"}) {
    const json& statuses = at(pod, {"status", list});
    if (!statuses.is_array()) continue;
    for (const auto& cs : statuses) {
      std::string name = str(cs, {"name"});
      std::string waiting = str(cs, {"state", "waiting", "reason"});
      std::string wmsg = str(cs, {"state", "waiting", "message"});
      json details = {{"container", name}, {"image", str(cs, {"image"})}, {"restarts", num(cs, {"restartCount"})}};
      if (waiting_failure(waiting)) {
        auto c = make(Verdict::failed, waiting, "container " + qt(name) + ": " + waiting + (wmsg.empty() ? "" : ": " + wmsg));
        if (waiting == "CreateContainerConfigError")
          if (json m = missing_reference(wmsg); !m.is_null()) details["missing"] = m;
        c.details = details;
        return c;
      }
      const json& term = at(cs, {"state", "terminated"}).is_object() ? at(cs, {"state", "terminated"})
                                                                     : at(cs, {"lastState", "terminated"});
      bool crashed = waiting == "CrashLoopBackOff" ||
                     (policy != "Never" && num(cs, {"state", "terminated", "exitCode"}) != 0);
      long long restarts = num(cs, {"restartCount"});
      if (crashed && restarts >= o.crashloop_restarts) {
        bool oom = str(term, {"reason"}) == "OOMKilled";
        std::string reason = oom ? "OOMKilled" : "CrashLoopBackOff";
        details["exit_code"] = num(term, {"exitCode"});
        if (!str(term, {"reason"}).empty()) details["last_reason"] = str(term, {"reason"});
        auto c = make(Verdict::failed, reason,
                      "container " + qt(name) + " crashed and was restarted " + n(restarts) + " times (last exit code " +
                          n(num(term, {"exitCode"})) + (str(term, {"reason"}).empty() ? "" : ", " + str(term, {"reason"})) + ")");
        c.details = details;
        return c;
      }
    }
  }
  return std::nullopt;
}

Classification pod(const json& p, const ClassifyOptions& o) {
  std::string name = str(p, {"metadata", "name"}), phase = str(p, {"status", "phase"});
  if (!at(p, {"metadata", "deletionTimestamp"}).is_null())
    return make(Verdict::progressing, "Terminating", "pod " + qt(name) + " is terminating");
  if (phase == "Succeeded") return make(Verdict::done, "Succeeded", "pod " + qt(name) + " succeeded");
  if (phase == "Failed") {
    auto c = container_failure(p, ClassifyOptions{0});
    std::string reason = str(p, {"status", "reason"});
    std::string msg = str(p, {"status", "message"});
    // a container killed for memory is the cause worth naming, whatever the pod's reason
    for (const auto& cs : at(p, {"status", "containerStatuses"}).is_array() ? at(p, {"status", "containerStatuses"}) : json::array())
      if (str(cs, {"state", "terminated", "reason"}) == "OOMKilled") {
        reason = "OOMKilled";
        msg = "container " + qt(str(cs, {"name"})) + " was killed: out of memory";
      }
    Classification f = make(Verdict::failed, reason.empty() ? "Failed" : reason,
                            "pod " + qt(name) + " failed" + (msg.empty() ? (c ? ": " + c->message : "") : ": " + msg));
    if (c) f.details = c->details;
    return f;
  }
  if (auto c = container_failure(p, o)) return *c;
  const json& scheduled = condition(p, "PodScheduled");
  if (scheduled.is_object() && scheduled.value("status", "") == "False" && scheduled.value("reason", "") == "Unschedulable")
    return make(Verdict::failed, "Unschedulable", "pod " + qt(name) + " cannot be scheduled: " + str(scheduled, {"message"}));
  if (phase == "Running") {
    std::string policy = str(p, {"spec", "restartPolicy"});
    if (policy == "Never" || policy == "OnFailure")  // it is done when it completes
      return make(Verdict::progressing, "Running", "pod " + qt(name) + " is running");
  }
  std::string waiting;  // the first container's reason to wait (ContainerCreating, CrashLoopBackOff)
  const json& statuses = at(p, {"status", "containerStatuses"});
  if (statuses.is_array())
    for (const auto& cs : statuses)
      if (waiting.empty()) waiting = str(cs, {"state", "waiting", "reason"});
  if (phase == "Running") {
    if (condition_true(p, "Ready")) return make(Verdict::done, "Ready", "pod " + qt(name) + " is ready");
    std::string why = str(condition(p, "Ready"), {"message"});
    return make(Verdict::progressing, waiting.empty() ? "NotReady" : waiting,
                "pod " + qt(name) + " is not ready" + (why.empty() ? "" : ": " + why) + (waiting.empty() ? "" : " (" + waiting + ")"));
  }
  return make(Verdict::progressing, waiting.empty() ? (phase.empty() ? "Pending" : phase) : waiting,
              "pod " + qt(name) + " is " + (phase.empty() ? "Pending" : phase) + (waiting.empty() ? "" : " (" + waiting + ")"));
}

// ------------------------------------------------------------------ others with a status

bool has_ingress(const json& obj) {
  const json& ingress = at(obj, {"status", "loadBalancer", "ingress"});
  return ingress.is_array() && !ingress.empty();
}

Classification service(const json& s) {
  if (str(s, {"spec", "type"}) == "LoadBalancer" && !has_ingress(s))
    return make(Verdict::progressing, "WaitingLoadBalancer", "service " + qt(str(s, {"metadata", "name"})) + " has no load balancer address yet");
  return make(Verdict::done, "Ready", "service " + qt(str(s, {"metadata", "name"})) + " exists");
}

Classification ingress(const json& i) {
  if (!has_ingress(i))
    return make(Verdict::progressing, "WaitingAddress", "ingress " + qt(str(i, {"metadata", "name"})) + " has no address yet");
  return make(Verdict::done, "Ready", "ingress " + qt(str(i, {"metadata", "name"})) + " has an address");
}

Classification replicaset(const json& r) {
  std::string name = str(r, {"metadata", "name"});
  const json& failure = condition(r, "ReplicaFailure");
  if (failure.is_object() && failure.value("status", "") == "True")
    return make(Verdict::failed, str(failure, {"reason"}), "replica set " + qt(name) + ": " + str(failure, {"message"}));
  long long want = num(r, {"spec", "replicas"}, 1), available = num(r, {"status", "availableReplicas"});
  if (!observed(r) || available < want)
    return make(Verdict::progressing, "WaitingAvailable", "replica set " + qt(name) + ": " + n(available) + " of " + n(want) + " available");
  return make(Verdict::done, "Complete", "replica set " + qt(name) + ": " + n(available) + " available");
}

}  // namespace

std::string_view to_string(Verdict v) {
  switch (v) {
    case Verdict::done: return "done";
    case Verdict::progressing: return "progressing";
    case Verdict::failed: return "failed";
    case Verdict::suspended: return "suspended";
    case Verdict::unknown: break;
  }
  return "unknown";
}

json Classification::to_json() const {
  json j = {{"verdict", to_string(verdict)}, {"reason", reason}, {"message", message}};
  if (!progress.empty()) j["progress"] = progress;
  if (!details.empty()) j["details"] = details;
  return j;
}

Classification classify(const json& object, const ClassifyOptions& options) {
  if (!object.is_object()) return make(Verdict::unknown, "NotAnObject", "not a Kubernetes object");
  std::string kind = object.value("kind", "");
  if (kind == "Deployment") return deployment(object);
  if (kind == "StatefulSet") return statefulset(object);
  if (kind == "DaemonSet") return daemonset(object);
  if (kind == "Job") return job(object);
  if (kind == "Pod") return pod(object, options);
  if (kind == "ReplicaSet") return replicaset(object);
  if (kind == "Service") return service(object);
  if (kind == "Ingress") return ingress(object);
  if (kind == "PersistentVolumeClaim") {
    std::string phase = str(object, {"status", "phase"});
    if (phase == "Bound") return make(Verdict::done, "Bound", "claim is bound");
    if (phase == "Lost") return make(Verdict::failed, "Lost", "claim lost its volume");
    return make(Verdict::progressing, phase.empty() ? "Pending" : phase, "claim is " + (phase.empty() ? std::string("Pending") : phase));
  }
  return make(Verdict::unknown, "NoRule", "no status rule for kind " + (kind.empty() ? std::string("(none)") : kind));
}

}  // namespace hoist::k8s
