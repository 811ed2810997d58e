// Label and field selectors evaluated by hoist (shared watches filter one namespace-wide
// stream with them): the API server's rules, requirement by requirement, and errors naming
// what cannot be read.
#include <doctest/doctest.h>
#include <hoist/k8s.hpp>

using namespace hoist::k8s;
using hoist::Code;
using hoist::Error;
using nlohmann::json;

namespace {

json object(json labels, std::string name = "web-1", std::string ns = "team") {
  return {{"metadata", {{"name", name}, {"namespace", ns}, {"labels", labels}}}};
}

Code code_of(std::string_view labels, std::string_view fields, std::string* message) {
  try {
    Selector::parse(labels, fields);
  } catch (const Error& e) {
    *message = e.message();
    return e.code();
  }
  return Code::internal;
}

}  // namespace

TEST_CASE("k8s selector: each label requirement as the API server reads it") {
  const json labels = {{"app", "web"}, {"tier", "front"}, {"canary", ""}};
  struct Row {
    const char* selector;
    bool match;
  };
  const Row rows[] = {
      {"", true},
      {"app=web", true},
      {"app==web", true},
      {" app = web , tier = front ", true},
      {"app=db", false},
      {"app!=db", true},
      {"app!=web", false},
      {"missing!=x", true},  // != and notin match an object without the label
      {"app in (db, web)", true},
      {"app in (db)", false},
      {"missing in (x)", false},
      {"app notin (db,cache)", true},
      {"app notin (web)", false},
      {"missing notin (x)", true},
      {"canary", true},
      {"missing", false},
      {"!missing", true},
      {"!canary", false},
      {"canary=", true},
      {"app=web,tier in (back)", false},
      {"example.com/team", false},
  };
  for (const auto& r : rows) {
    CAPTURE(r.selector);
    CHECK(Selector::parse(r.selector).matches(object(labels)) == r.match);
  }
  CHECK(Selector::parse("app").matches(json{{"metadata", {{"name", "x"}}}}) == false);  // no labels at all
  CHECK(Selector::parse("!app").matches(json::object()));
}

TEST_CASE("k8s selector: field selectors on the name and namespace") {
  CHECK(Selector::parse("", "metadata.name=web-1").matches(object(json::object())));
  CHECK(Selector::parse("", "metadata.name==web-1,metadata.namespace=team").matches(object(json::object())));
  CHECK_FALSE(Selector::parse("", "metadata.name=web-2").matches(object(json::object())));
  CHECK(Selector::parse("", "metadata.name!=web-2").matches(object(json::object())));
  CHECK_FALSE(Selector::parse("app=web", "metadata.name=web-1").matches(object({{"app", "db"}})));
  CHECK(Selector::parse("", "").empty());
}

TEST_CASE("k8s selector: what it cannot read is refused, naming the selector") {
  struct Row {
    const char* labels;
    const char* fields;
    const char* says;
  };
  const Row rows[] = {
      {"replicas>2", "", "label selector 'replicas>2': 'replicas>2': expected =, ==, !=, in or notin (> and < are not supported)"},
      {"app=a,,b", "", "an empty requirement"},
      {"app in (a", "", "unbalanced '('"},
      {"app)", "", "unbalanced ')'"},
      {"app in a", "", "expected a list of values in parentheses"},
      {"=web", "", "no key"},
      {"!app=web", "", "'!' takes a key alone"},
      {"app=a/b", "", "a value may hold letters"},
      {"", "spec.nodeName=n1", "field selector 'spec.nodeName=n1': the field 'spec.nodeName' cannot be evaluated here"},
      {"", "metadata.name", "expected field=value"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.labels);
    CAPTURE(r.fields);
    std::string message;
    CHECK(code_of(r.labels, r.fields, &message) == Code::invalid_argument);
    CHECK(message.find(r.says) != std::string::npos);
  }
}
