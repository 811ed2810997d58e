// EventBus: the plan of a dry run is collected by the bus itself, from any emitter.
#include <doctest/doctest.h>
#include <hoist/events.hpp>
#include <hoist/secrets.hpp>

#include <memory>

TEST_CASE("events: the bus collects plan events while capturing, scrubbed, until taken") {
  auto secrets = std::make_shared<hoist::Secrets>();
  secrets->add("s3cr3t-value");
  hoist::EventBus bus(secrets);
  bus.emit({0, "info", "plan", "would push", {{"action", "docker.push"}}});
  CHECK(bus.take_plan().empty());  // not capturing: nothing kept

  CHECK_FALSE(bus.capture_plan(true));
  bus.emit({0, "info", "plan", "would PUT x", {{"method", "PUT"}, {"body", "token=s3cr3t-value"}}});
  bus.emit({0, "info", "log", "not a plan", {}});
  bus.emit({0, "info", "plan", "would run it", {{"message", "run it"}}});
  auto steps = bus.take_plan();
  REQUIRE(steps.size() == 2);
  CHECK(steps[0]["message"] == "would PUT x");  // the event's message when the fields have none
  CHECK(steps[0]["body"].get<std::string>().find("s3cr3t-value") == std::string::npos);
  CHECK(steps[1]["message"] == "run it");
  CHECK(bus.take_plan().empty());  // taken once
  CHECK(bus.capture_plan(false));  // returns the previous setting
}
