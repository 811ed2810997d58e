#pragma once
// Everything that happens in a run is an Event. Sinks render them: a terminal view, JSON
// lines, the run's events.jsonl, an embedding host's callback. Every sink sees scrubbed data.
#include <hoist/secrets.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace hoist {

struct Event {
  double ts = 0;         // unix seconds
  std::string level;     // debug | info | warn | error
  std::string kind;      // log | exec.start | exec.line | exec.end | stage.start | ...
  std::string message;   // human text
  nlohmann::json fields = nlohmann::json::object();

  nlohmann::json to_json() const;
};

class Sink {
 public:
  virtual ~Sink() = default;
  virtual void write(const Event& event) = 0;
  virtual void flush() {}
};

class EventBus {
 public:
  explicit EventBus(std::shared_ptr<Secrets> secrets);
  void add_sink(std::shared_ptr<Sink> sink);
  // Scrubs message and fields of every registered secret, stamps ts, dispatches.
  void emit(Event event);
  void log(std::string level, std::string message, nlohmann::json fields = nlohmann::json::object());
  void flush();
  const std::shared_ptr<Secrets>& secrets() const { return secrets_; }

  // The plan of a dry run. While capturing, every event of kind "plan" (whoever emits it:
  // hoist.pipeline.plan, hoist.docker, a native module) is kept as a step: its fields, scrubbed,
  // with "message" added when they lack it. capture_plan returns the previous setting;
  // take_plan hands over the steps kept since the last take.
  bool capture_plan(bool on);
  std::vector<nlohmann::json> take_plan();

 private:
  std::shared_ptr<Secrets> secrets_;
  std::mutex mu_;
  std::vector<std::shared_ptr<Sink>> sinks_;
  bool capturing_plan_ = false;
  std::vector<nlohmann::json> plan_;
};

// Masks secrets in every string (and key) of a JSON value.
void scrub_json(const Secrets& secrets, nlohmann::json& value);

// Human view for a terminal or a plain log: one line per event, colour when asked.
std::shared_ptr<Sink> make_terminal_sink(std::FILE* out, bool color, std::string min_level = "info");
// One JSON object per line.
std::shared_ptr<Sink> make_json_sink(std::FILE* out, std::string min_level = "debug");
// Appends JSON lines to a file (created with its folders).
std::shared_ptr<Sink> make_file_sink(const std::string& path);
std::shared_ptr<Sink> make_callback_sink(std::function<void(const Event&)> fn);

}  // namespace hoist
