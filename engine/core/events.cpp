#include <hoist/events.hpp>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <utility>

namespace hoist {
namespace {

int level_rank(const std::string& level) {
  if (level == "debug") return 0;
  if (level == "info") return 1;
  if (level == "warn") return 2;
  if (level == "error") return 3;
  return 1;
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

const char* progress_mark(const std::string& kind, const std::string& status) {
  if (kind == "stage.start") return "▶ ";
  if (kind == "compensation.start") return "↺ ";
  if (status == "succeeded") return "✓ ";
  if (status == "skipped") return "- ";
  return "✗ ";
}

// " key=value ..." for a log line's fields (hoist.log.info(msg, fields)): scalars as they
// are, strings quoted when they hold a blank or a quote, tables as compact JSON.
std::string field_text(const nlohmann::json& fields) {
  if (!fields.is_object()) return "";
  std::string out;
  for (const auto& [k, v] : fields.items()) {
    std::string text;
    if (v.is_string()) {
      const auto& s = v.get_ref<const std::string&>();
      bool plain = !s.empty() && s.find_first_of(" \t\n\r\"=") == std::string::npos;
      text = plain ? s : v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    } else {
      text = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    out += " " + k + "=" + text;
  }
  return out;
}

class TerminalSink : public Sink {
 public:
  TerminalSink(std::FILE* out, bool color, std::string min_level)
      : out_(out), color_(color), min_(level_rank(min_level)) {}

  void write(const Event& e) override {
    if (level_rank(e.level) < min_) return;
    std::time_t t = static_cast<std::time_t>(e.ts);
    std::tm tm{};
    localtime_r(&t, &tm);
    char stamp[16];
    std::strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
    const char* colour = "";
    const char* tag = "";
    if (e.level == "error") colour = "\x1b[31m", tag = "error ";
    else if (e.level == "warn") colour = "\x1b[33m", tag = "warn  ";
    else if (e.level == "debug") colour = "\x1b[2m", tag = "debug ";
    std::string line;
    if (e.kind == "exec.line") {
      line = "  | " + e.fields.value("program", std::string()) + ": " + e.message;
      colour = color_ ? "\x1b[2m" : "";
    } else if (e.kind == "stage.start" || e.kind == "stage.end" || e.kind == "compensation.start" ||
               e.kind == "compensation.end") {
      // Pipeline progress: the mark (▶ ✓ ✗ ↺) is the terminal's; messages carry none, so the
      // JSON log and events.jsonl stay plain text. Colour says the outcome.
      auto status = e.fields.is_object() ? e.fields.value("status", std::string()) : std::string();
      line = std::string(progress_mark(e.kind, status)) + e.message;
      if (e.kind == "stage.start") colour = "\x1b[1m";
      else if (status == "succeeded") colour = "\x1b[32m";
      else if (status == "failed") colour = "\x1b[31m";
      else colour = "\x1b[2m";
    } else {
      line = std::string(tag) + e.message;
      if (e.kind == "log") line += field_text(e.fields);
    }
    if (color_ && *colour)
      std::fprintf(out_, "\x1b[2m%s\x1b[0m %s%s\x1b[0m\n", stamp, colour, line.c_str());
    else
      std::fprintf(out_, "%s %s\n", stamp, line.c_str());
    std::fflush(out_);
  }

 private:
  std::FILE* out_;
  bool color_;
  int min_;
};

class JsonSink : public Sink {
 public:
  JsonSink(std::FILE* out, std::string min_level) : out_(out), min_(level_rank(min_level)) {}
  void write(const Event& e) override {
    if (level_rank(e.level) < min_) return;
    std::string line = e.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::fprintf(out_, "%s\n", line.c_str());
    std::fflush(out_);
  }

 private:
  std::FILE* out_;
  int min_;
};

class FileSink : public Sink {
 public:
  explicit FileSink(const std::string& path) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    out_.open(path, std::ios::app | std::ios::binary);
  }
  void write(const Event& e) override {
    out_ << e.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  }
  void flush() override { out_.flush(); }

 private:
  std::ofstream out_;
};

class CallbackSink : public Sink {
 public:
  explicit CallbackSink(std::function<void(const Event&)> fn) : fn_(std::move(fn)) {}
  void write(const Event& e) override { fn_(e); }

 private:
  std::function<void(const Event&)> fn_;
};

}  // namespace

void scrub_json(const Secrets& secrets, nlohmann::json& j) {
  if (j.is_string()) {
    j = secrets.scrub(j.get_ref<const std::string&>());
  } else if (j.is_array()) {
    for (auto& v : j) scrub_json(secrets, v);
  } else if (j.is_object()) {
    nlohmann::json out = nlohmann::json::object();
    for (auto& [k, v] : j.items()) {
      auto value = v;
      scrub_json(secrets, value);
      out[secrets.scrub(k)] = std::move(value);
    }
    j = std::move(out);
  }
}

nlohmann::json Event::to_json() const {
  nlohmann::json j = {{"ts", ts}, {"level", level}, {"kind", kind}, {"message", message}};
  if (!fields.empty()) j["fields"] = fields;
  return j;
}

EventBus::EventBus(std::shared_ptr<Secrets> secrets) : secrets_(std::move(secrets)) {}

void EventBus::add_sink(std::shared_ptr<Sink> sink) {
  std::lock_guard lock(mu_);
  sinks_.push_back(std::move(sink));
}

void EventBus::emit(Event e) {
  if (e.ts == 0) e.ts = now_seconds();
  if (e.level.empty()) e.level = "info";
  if (e.kind.empty()) e.kind = "log";
  if (!secrets_->empty()) {
    e.message = secrets_->scrub(e.message);
    scrub_json(*secrets_, e.fields);
  }
  std::lock_guard lock(mu_);
  if (capturing_plan_ && e.kind == "plan") {
    nlohmann::json step = e.fields.is_object() ? e.fields : nlohmann::json::object();
    if (!step.contains("message")) step["message"] = e.message;
    plan_.push_back(std::move(step));
  }
  for (auto& s : sinks_) s->write(e);
}

bool EventBus::capture_plan(bool on) {
  std::lock_guard lock(mu_);
  return std::exchange(capturing_plan_, on);
}

std::vector<nlohmann::json> EventBus::take_plan() {
  std::lock_guard lock(mu_);
  return std::exchange(plan_, {});
}

void EventBus::log(std::string level, std::string message, nlohmann::json fields) {
  emit(Event{0, std::move(level), "log", std::move(message), std::move(fields)});
}

void EventBus::flush() {
  std::lock_guard lock(mu_);
  for (auto& s : sinks_) s->flush();
}

std::shared_ptr<Sink> make_terminal_sink(std::FILE* out, bool color, std::string min_level) {
  return std::make_shared<TerminalSink>(out, color, std::move(min_level));
}
std::shared_ptr<Sink> make_json_sink(std::FILE* out, std::string min_level) {
  return std::make_shared<JsonSink>(out, std::move(min_level));
}
std::shared_ptr<Sink> make_file_sink(const std::string& path) { return std::make_shared<FileSink>(path); }
std::shared_ptr<Sink> make_callback_sink(std::function<void(const Event&)> fn) {
  return std::make_shared<CallbackSink>(std::move(fn));
}

}  // namespace hoist
