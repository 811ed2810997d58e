// The Resource Manager client against a scripted server: the ARM RPC's long-running operations
// (Azure-AsyncOperation, Location, provisioningState, the final GET), an operation's failure
// as the structured error, the error envelope, the 401 renewal, pages, api-versions, dry-run.
#include "tests/azure/fixture.hpp"

using namespace hoist;
using namespace hoist::azure;
using namespace hoist::azure::testing;
using nlohmann::json;

namespace {

const std::string kOrder = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/web";

ArmRequest put_order(json body = {{"location", "eastus"}}) {
  ArmRequest r;
  r.method = "PUT";
  r.path = kOrder;
  r.body = std::move(body);
  return r;
}

}  // namespace

TEST_CASE("PUT with Azure-AsyncOperation: polls the operation to Succeeded, then GETs the resource") {
  Fixture f;
  int polls = 0;
  f.server.handler = [&](const Seen& s) {
    if (s.method == "PUT")
      return json_reply(201, {{"properties", {{"provisioningState", "Creating"}}}},
                        {{"Azure-AsyncOperation", f.server.url("/ops/1")}, {"Retry-After", "0"}});
    if (path_of(s.target) == "/ops/1")
      return json_reply(200, {{"status", ++polls < 2 ? "InProgress" : "Succeeded"}});
    return json_reply(200, {{"name", "web"}, {"properties", {{"provisioningState", "Succeeded"}}}});
  };
  auto r = f.arm(f.static_token(), put_order());
  REQUIRE(r.ok());
  CHECK(r->operation_status == "Succeeded");
  CHECK(r->polls == 2);
  CHECK(r->body["properties"]["provisioningState"] == "Succeeded");
  CHECK(f.requests() == std::vector<std::string>{"PUT " + kOrder, "GET /ops/1", "GET /ops/1", "GET " + kOrder});
  // the pinned api-version, carried to a poll URL that had none
  CHECK(query_param(f.server.seen[0].target, "api-version") == "2026-05-01");
  CHECK(query_param(f.server.seen[1].target, "api-version") == "2026-05-01");
  CHECK(f.server.seen[0].headers.at("authorization") == "Bearer static-test-token");
  CHECK(f.server.seen[0].headers.at("content-type") == "application/json");
  CHECK(json::parse(f.server.seen[0].body) == json{{"location", "eastus"}});
}

TEST_CASE("an operation that ends Failed or Canceled raises its own error, with request ids") {
  struct Row {
    std::string status;
    json error;
    Code code;
    std::string message;
  };
  for (const Row& row : {
           Row{"Failed", {{"code", "Conflict"}, {"message", "the name is taken"}, {"target", "name"}, {"details", json::array({{{"code", "Inner"}}})}},
               Code::conflict, "the operation ended Failed: the name is taken (Conflict)"},
           Row{"Failed", {{"code", "ContainerGroupQuotaReached"}, {"message", "quota"}}, Code::throttled,
               "ended Failed: quota (ContainerGroupQuotaReached)"},
           Row{"Failed", {{"code", "InternalServerError"}, {"message", "boom"}}, Code::rollout_failed, "ended Failed: boom"},
           Row{"Canceled", nullptr, Code::rollout_failed, "the operation ended Canceled"},
       }) {
    CAPTURE(row.message);
    Fixture f;
    f.server.handler = [&](const Seen& s) {
      if (s.method == "PUT") return json_reply(201, json::object(), {{"Azure-AsyncOperation", f.server.url("/ops/2")}});
      json body = {{"status", row.status}};
      if (!row.error.is_null()) body["error"] = row.error;
      return json_reply(200, body, {{"x-ms-request-id", "req-42"}, {"x-ms-correlation-request-id", "corr-7"}});
    };
    auto r = f.arm(f.static_token(), put_order());
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == row.code);
    CHECK(r.error().message().find(row.message) != std::string::npos);
    CHECK(r.error().message().find("PUT " + kOrder) == 0);
    CHECK(r.error().details()["operation_status"] == row.status);
    CHECK(r.error().details()["request_ids"]["x-ms-request-id"] == "req-42");
    CHECK(r.error().details()["request_ids"]["x-ms-correlation-request-id"] == "corr-7");
    if (!row.error.is_null()) CHECK(r.error().details()["error"] == row.error);  // code, message, target, details
    CHECK(f.requests().size() == 2);  // no final GET after a failure
  }
}

TEST_CASE("DELETE with Location: polls while 202, the end is the Location's answer") {
  Fixture f;
  int polls = 0;
  f.server.handler = [&](const Seen& s) {
    if (s.method == "DELETE") return Reply{202, {{"Location", f.server.url("/results/9?api-version=x")}}, ""};
    return ++polls < 3 ? Reply{202, {{"Retry-After", "0"}}, ""} : Reply{204, {}, ""};
  };
  ArmRequest r;
  r.method = "DELETE";
  r.path = kOrder;
  auto out = f.arm(f.static_token(), r);
  REQUIRE(out.ok());
  CHECK(out->status == 204);
  CHECK(out->body.is_null());
  CHECK(out->operation_status == "Succeeded");
  CHECK(out->polls == 3);
  CHECK(query_param(f.server.seen[1].target, "api-version") == "x");  // a poll URL's own version is kept
}

TEST_CASE("DELETE with Azure-AsyncOperation: ends with the operation's status, no body, no final GET") {
  Fixture f;
  f.server.handler = [&](const Seen& s) {
    if (s.method == "DELETE")
      return Reply{202, {{"Azure-AsyncOperation", f.server.url("/aao")}, {"Location", f.server.url("/loc")}}, ""};
    return json_reply(200, {{"status", "Succeeded"}});
  };
  ArmRequest r;
  r.method = "DELETE";
  r.path = kOrder;
  auto out = f.arm(f.static_token(), r);
  REQUIRE(out.ok());
  CHECK(out->status == 200);
  CHECK(out->body.is_null());
  CHECK(f.requests() == std::vector<std::string>{"DELETE " + kOrder, "GET /aao"});
}

TEST_CASE("POST with Azure-AsyncOperation and Location: the result is the Location's final body") {
  Fixture f;
  f.server.handler = [&](const Seen& s) {
    if (s.method == "POST")
      return Reply{202, {{"Location", f.server.url("/loc")}, {"Azure-AsyncOperation", f.server.url("/aao")}}, ""};
    if (path_of(s.target) == "/aao") return json_reply(200, {{"status", "Succeeded"}});
    return json_reply(200, {{"content", "a,b"}});
  };
  ArmRequest r;
  r.method = "POST";
  r.path = kOrder + "/restart";
  auto out = f.arm(f.static_token(), r);
  REQUIRE(out.ok());
  CHECK(out->body["content"] == "a,b");
  CHECK(f.requests() == std::vector<std::string>{"POST " + kOrder + "/restart", "GET /aao", "GET /loc"});
}

TEST_CASE("PUT without operation headers: provisioningState on the resource is polled to its end") {
  for (std::string end : {"Succeeded", "Failed"}) {
    CAPTURE(end);
    Fixture f;
    int gets = 0;
    f.server.handler = [&](const Seen& s) {
      if (s.method == "PUT") return json_reply(201, {{"properties", {{"provisioningState", "Creating"}}}});
      return json_reply(200, {{"properties", {{"provisioningState", ++gets < 2 ? "Updating" : end}}}});
    };
    auto out = f.arm(f.static_token(), put_order());
    if (end == "Succeeded") {
      REQUIRE(out.ok());
      CHECK(out->body["properties"]["provisioningState"] == "Succeeded");
      CHECK(gets == 2);
    } else {
      REQUIRE_FALSE(out.ok());
      CHECK(out.error().code() == Code::rollout_failed);
      CHECK(out.error().message().find("ended Failed") != std::string::npos);
      CHECK(out.error().details()["error"]["code"] == "ProvisioningStateFailed");
    }
  }
}

TEST_CASE("Retry-After between polls replaces the poll interval; wait_timeout ends an endless operation") {
  Fixture f;
  int polls = 0;
  f.server.handler = [&](const Seen& s) {
    if (s.method == "PUT") return json_reply(201, json::object(), {{"Azure-AsyncOperation", f.server.url("/op")}, {"Retry-After", "0"}});
    if (path_of(s.target) != "/op") return json_reply(200, {{"name", "web"}});
    return json_reply(200, {{"status", ++polls < 3 ? "Running" : "Succeeded"}}, {{"Retry-After", "0"}});
  };
  ArmOptions o;
  o.poll_interval = 3600;  // never waited: the server says 0
  auto out = f.arm(f.static_token(), put_order(), o);
  REQUIRE(out.ok());
  CHECK(polls == 3);

  Fixture g;
  g.server.handler = [&](const Seen& s) {
    if (s.method == "PUT") return json_reply(201, json::object(), {{"Azure-AsyncOperation", g.server.url("/op")}});
    return json_reply(200, {{"status", "InProgress"}});
  };
  ArmOptions short_wait;
  short_wait.poll_interval = 0.02;
  short_wait.wait_timeout = 0.2;
  auto late = g.arm(g.static_token(), put_order(), short_wait);
  REQUIRE_FALSE(late.ok());
  CHECK(late.error().code() == Code::timeout);
  CHECK(late.error().message().find("did not end within") != std::string::npos);
  CHECK(late.error().details()["status"] == "InProgress");
}

TEST_CASE("wait = false returns at once with where the operation's status is") {
  Fixture f;
  f.server.handler = [&](const Seen&) {
    return json_reply(201, json::object(), {{"Azure-AsyncOperation", f.server.url("/op/7")}});
  };
  ArmRequest r = put_order();
  r.wait = false;
  auto out = f.arm(f.static_token(), r);
  REQUIRE(out.ok());
  CHECK(out->poll_url == f.server.url("/op/7"));
  CHECK(f.server.seen.size() == 1);
}

TEST_CASE("the ARM error envelope keeps code, message, target, details and request ids") {
  Fixture f;
  json error = {{"code", "InvalidResourceName"}, {"message", "Resource name 'Web!' is invalid."}, {"target", "name"},
                {"details", json::array({{{"code", "NameRule"}, {"message", "letters only"}}})}};
  f.server.handler = [&](const Seen&) {
    return json_reply(400, {{"error", error}}, {{"x-ms-request-id", "r-1"}, {"x-ms-correlation-request-id", "c-1"}});
  };
  auto out = f.arm(f.static_token(), put_order());
  REQUIRE_FALSE(out.ok());
  CHECK(out.error().code() == Code::invalid_argument);
  CHECK(out.error().message().find("Resource name 'Web!' is invalid. (InvalidResourceName) (HTTP 400") != std::string::npos);
  CHECK(out.error().details()["error"] == error);
  CHECK(out.error().details()["request_ids"]["x-ms-request-id"] == "r-1");
  CHECK(out.error().details()["request_ids"]["x-ms-correlation-request-id"] == "c-1");
}

TEST_CASE("App Service's own error envelope (top-level Code, Message) is read as ARM's") {
  Fixture f;
  std::string message = "Cannot modify this site because another operation is in progress. Details: Id: 31d0ccd7, "
                        "OperationName: SwapSiteSlots, SiteName: web, SlotName: staging";
  json entity = {{"ExtendedCode", "59203"}, {"Code", "Conflict"}, {"Message", message}};
  json details = json::array({{{"Message", message}}, {{"Code", "Conflict"}}, {{"ErrorEntity", entity}}});
  f.server.handler = [&](const Seen&) {
    return json_reply(409, {{"Code", "Conflict"}, {"Message", message}, {"Target", nullptr}, {"Details", details},
                            {"Innererror", nullptr}});
  };
  auto out = f.arm(f.static_token(), put_order());
  REQUIRE_FALSE(out.ok());
  CHECK(out.error().code() == Code::conflict);
  CHECK(out.error().message().find("OperationName: SwapSiteSlots, SiteName: web, SlotName: staging (Conflict) (HTTP 409") !=
        std::string::npos);
  CHECK(out.error().details()["error"]["code"] == "Conflict");
  CHECK(out.error().details()["error"]["message"] == message);
  CHECK(out.error().details()["error"]["extended_code"] == "59203");
  CHECK(out.error().details()["error"]["details"] == details);
  CHECK(f.server.seen.size() == 1);  // a 409 is not retried
}

TEST_CASE("429 with Retry-After is retried by the REST layer") {
  Fixture f;
  f.server.handler = [&](const Seen&) {
    if (f.server.seen.size() == 1) return json_reply(429, {{"error", {{"code", "TooManyRequests"}}}}, {{"Retry-After", "0"}});
    return json_reply(200, {{"name", "web"}});
  };
  ArmRequest r;
  r.path = kOrder;
  auto out = f.arm(f.static_token(), r);
  REQUIRE(out.ok());
  CHECK(out->body["name"] == "web");
  CHECK(f.server.seen.size() == 2);
}

TEST_CASE("a 401 renews the token once; a second 401 is the error") {
  for (int refusals : {1, 2}) {
    CAPTURE(refusals);
    Fixture f;
    int tokens = 0, arm_calls = 0;
    f.server.handler = [&](const Seen& s) {
      if (path_of(s.target) == "/tenant-1/oauth2/v2.0/token")
        return json_reply(200, {{"access_token", "tok-" + std::to_string(++tokens)}, {"expires_in", 3600}});
      return ++arm_calls <= refusals ? json_reply(401, {{"error", {{"code", "ExpiredAuthenticationToken"}, {"message", "expired"}}}})
                                     : json_reply(200, {{"name", "web"}});
    };
    CredentialOptions o;
    o.source = "client_secret";
    auto c = f.credential(o, {{"AZURE_CLIENT_ID", "app"}, {"AZURE_TENANT_ID", "tenant-1"}, {"AZURE_CLIENT_SECRET", "s3cret-value"}});
    ArmRequest r;
    r.path = kOrder;
    auto out = f.arm(c, r);
    CHECK(tokens == 2);  // the refused token was dropped and a fresh one fetched, once
    if (refusals == 1) {
      REQUIRE(out.ok());
      auto last = f.server.seen.back();
      CHECK(last.headers.at("authorization") == "Bearer tok-2");
    } else {
      REQUIRE_FALSE(out.ok());
      CHECK(out.error().code() == Code::unauthorized);
      CHECK(out.error().message().find("expired (ExpiredAuthenticationToken)") != std::string::npos);
    }
  }
}

TEST_CASE("dry-run: PUT, PATCH, DELETE and action POSTs are plan steps; GETs and list* POSTs are sent") {
  Fixture f;
  f.server.handler = [&](const Seen&) { return json_reply(200, {{"ok", true}}); };
  auto c = f.static_token();
  ArmOptions o;
  o.dry_run = true;
  for (std::string m : {"PUT", "PATCH", "DELETE"}) {
    ArmRequest r = put_order();
    r.method = m;
    auto out = f.arm(c, r, o);
    REQUIRE(out.ok());
    CHECK(out->planned);
  }
  ArmRequest restart;
  restart.method = "POST";
  restart.path = kOrder + "/restart";
  CHECK(f.arm(c, restart, o)->planned);
  ArmRequest keys;
  keys.method = "POST";
  keys.path = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr1/listCredentials";
  CHECK_FALSE(f.arm(c, keys, o)->planned);
  ArmRequest get;
  get.path = kOrder;
  CHECK_FALSE(f.arm(c, get, o)->planned);
  CHECK(f.requests() == std::vector<std::string>{"POST " + keys.path, "GET " + kOrder});
  int plans = 0;
  for (auto& e : f.seen_events)
    if (e.kind == "plan") {
      ++plans;
      CHECK(e.fields["resource_type"].get<std::string>().rfind("Microsoft.ContainerInstance/containerGroups", 0) == 0);
      CHECK(e.fields["action"].get<std::string>().rfind("azure.", 0) == 0);
    }
  CHECK(plans == 4);
}

TEST_CASE("paged: nextLink pages are followed and their values joined") {
  Fixture f;
  f.server.handler = [&](const Seen& s) {
    if (query_param(s.target, "page") == "2") return json_reply(200, {{"value", json::array({{{"name", "b"}}})}});
    return json_reply(200, {{"value", json::array({{{"name", "a"}}})}, {"nextLink", f.server.url("/next?page=2&api-version=v")}});
  };
  ArmRequest r;
  r.path = "/subscriptions/s1/resourceGroups";
  r.paged = true;
  auto out = f.arm(f.static_token(), r);
  REQUIRE(out.ok());
  CHECK(out->body["value"] == json::array({{{"name", "a"}}, {{"name", "b"}}}));
}

TEST_CASE("api-versions: pinned per resource type, overridable, and a clear error when unknown") {
  struct Row {
    std::string path, type, version;
  };
  for (const Row& row : {
           Row{"/subscriptions/s/resourceGroups/rg", "Microsoft.Resources/resourceGroups", "2025-04-01"},
           Row{"/subscriptions/s/resourcegroups", "Microsoft.Resources/resourceGroups", "2025-04-01"},
           Row{"/subscriptions/s", "Microsoft.Resources/subscriptions", "2022-12-01"},
           Row{"/subscriptions/s/providers/Microsoft.App", "Microsoft.Resources/providers", "2025-04-01"},
           Row{"/subscriptions/s/providers/Microsoft.App/register", "Microsoft.Resources/providers", "2025-04-01"},
           Row{"/subscriptions/s/providers/Microsoft.App/containerApps", "Microsoft.App/containerApps", "2025-07-01"},
           Row{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/slots/staging",
               "Microsoft.Web/sites/slots", "2024-11-01"},
           Row{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r/listCredentials",
               "Microsoft.ContainerRegistry/registries/listCredentials", "2025-04-01"},
           Row{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r/providers/"
               "Microsoft.Authorization/roleAssignments/x",
               "Microsoft.Authorization/roleAssignments", "2022-04-01"},
           Row{"https://management.azure.com/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/"
               "managedClusters/k?x=1",
               "Microsoft.ContainerService/managedClusters", "2025-10-01"},
           Row{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/"
               "onlineEndpoints/e/deployments/d/getLogs",
               "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/getLogs", "2025-09-01"},
           Row{"/subscriptions/s/resourceGroups/rg/providers/Contoso.Widgets/widgets/w", "Contoso.Widgets/widgets", ""},
       }) {
    CAPTURE(row.path);
    CHECK(resource_type_of(row.path) == row.type);
    CHECK(api_version_for(row.path) == row.version);
  }
  Fixture f;
  Arm arm(f.io, f.http, f.static_token(), nullptr, "https://arm.example/");
  ArmRequest r;
  r.path = "/subscriptions/s/resourceGroups/rg";
  r.query = {{"$filter", "a b"}};
  CHECK(arm.url_of(r) == "https://arm.example/subscriptions/s/resourceGroups/rg?api-version=2025-04-01&$filter=a%20b");
  r.api_version = "2021-04-01";
  CHECK(arm.url_of(r).find("api-version=2021-04-01") != std::string::npos);
  r.path = "/subscriptions/s/resourceGroups/rg/providers/Contoso.Widgets/widgets/w";
  r.api_version = "";
  CHECK_THROWS_WITH_AS(arm.url_of(r),
                       doctest::Contains("no api-version is pinned for resource type 'Contoso.Widgets/widgets'"), Error);
  r.path = "subscriptions/s";
  CHECK_THROWS_WITH_AS(arm.url_of(r), doctest::Contains("must start with '/'"), Error);
}
