// Secrets::scrub throughput, doctest-free. Build it against a secrets.cpp (the current one, or
// an older one with its header, to compare) and run the two in the same minute:
//   clang++ -std=c++20 -O2 -Iengine/include bench/scrub_bench.cpp engine/core/secrets.cpp \
//     engine/core/error.cpp engine/core/json.cpp -o /tmp/scrub_bench && /tmp/scrub_bench
// Prints MB/s for four texts of 8 MB each, 5 secrets registered: log lines with no secret,
// log lines with a secret in some form every 4 KB, JSON with escapes everywhere, and '%'/'\'
// on every other byte (each one starts an escaped form to try).
#include <hoist/secrets.hpp>

#include <chrono>
#include <cstdio>
#include <string>

namespace {

std::string repeat_to(const std::string& unit, std::size_t size) {
  std::string out;
  while (out.size() < size) out += unit;
  return out;
}

double mb_per_s(const hoist::Secrets& s, const std::string& text) {
  double best = 0;
  for (int round = 0; round < 5; ++round) {
    auto start = std::chrono::steady_clock::now();
    std::string out = s.scrub(text);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (out.empty()) std::puts("?");
    best = std::max(best, text.size() / 1e6 / secs);
  }
  return best;
}

}  // namespace

int main() {
  hoist::Secrets s;
  for (const char* v : {"hunter2-Pa$$word/x", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "p@ss w0rd\n\"quoted\"",
                        "AKIAIOSFODNN7EXAMPLE", "caf\xC3\xA9-s3cr3t"})
    s.add(v);
  const std::size_t size = 8 << 20;
  const std::string log = "2026-12-01T12:00:00Z info step 3/7: pushing layer sha256:4f2a9c0e1b (12.3 MB), "
                          "retry=0 url=https://registry.example.com/v2/app/blobs/uploads/?digest=x\n";
  std::string some = repeat_to(log, 4096) + "token=hunter2-Pa%24%24word%2Fx\n";
  const std::string json = R"({"msg":"line\n\"quoted\" \u00e9 path\/to\/x","n":1,"url":"a%20b%2Fc"},)" "\n";
  const std::string escapes = "%\\a%\\b%\\c%\\d";
  const struct {
    const char* name;
    std::string text;
  } rows[] = {{"log lines, no secret", repeat_to(log, size)},
              {"log lines, a secret every 4 KB", repeat_to(some, size)},
              {"JSON with escapes", repeat_to(json, size)},
              {"'%' and '\\' every other byte", repeat_to(escapes, size)}};
  for (const auto& row : rows) std::printf("%-34s %8.1f MB/s\n", row.name, mb_per_s(s, row.text));
}
