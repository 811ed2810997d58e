// engine/core/journal.cpp: appended lines survive, a torn last line is skipped, run folders
// are listed newest first, dead processes are told from live ones.
#include <hoist/error.hpp>
#include <hoist/journal.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {
fs::path temp_dir() {
  char tmpl[] = "/tmp/hoist-journal-XXXXXX";
  return fs::path(mkdtemp(tmpl));
}
}  // namespace

TEST_CASE("journal: appended entries read back in order; a torn last line is skipped") {
  auto dir = temp_dir();
  auto path = (dir / "runs" / "r1" / "journal.jsonl").string();
  {
    hoist::Journal j(path);
    j.append({{"kind", "run.start"}, {"n", 1}});
    j.append({{"kind", "stage.start"}, {"n", 2}});
  }
  std::ofstream(path, std::ios::app) << "{\"kind\":\"stage.e";  // a crash in the middle of a write
  int skipped = -1;
  auto entries = hoist::read_json_lines(path, &skipped);
  REQUIRE(entries.size() == 2);
  CHECK(entries[0]["kind"] == "run.start");
  CHECK(entries[1]["n"] == 2);
  CHECK(skipped == 1);
  CHECK((fs::status(path).permissions() & fs::perms::others_read) == fs::perms::none);
  fs::remove_all(dir);
}

TEST_CASE("journal: a closed journal refuses appends; a missing file is not_found") {
  auto dir = temp_dir();
  hoist::Journal j((dir / "j.jsonl").string());
  j.close();
  CHECK_THROWS_AS(j.append({{"kind", "x"}}), hoist::Error);
  try {
    hoist::read_json_lines((dir / "nope.jsonl").string());
    FAIL("expected not_found");
  } catch (const hoist::Error& e) {
    CHECK(e.code() == hoist::Code::not_found);
  }
  fs::remove_all(dir);
}

TEST_CASE("journal: run folders newest first, with what they hold") {
  auto dir = temp_dir();
  fs::create_directories(dir / "runs" / "20250101-000000-aaaa");
  fs::create_directories(dir / "runs" / "20250102-000000-bbbb");
  hoist::Journal((dir / "runs" / "20250102-000000-bbbb" / "journal.jsonl").string());
  auto runs = hoist::list_run_folders(dir.string());
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].id == "20250102-000000-bbbb");
  CHECK(runs[0].has_journal);
  CHECK_FALSE(runs[1].has_journal);
  CHECK(hoist::list_run_folders((dir / "none").string()).empty());
  fs::remove_all(dir);
}

TEST_CASE("journal: write_file_durable replaces a file whole") {
  auto dir = temp_dir();
  auto path = (dir / "plan.json").string();
  hoist::write_file_durable(path, "one");
  hoist::write_file_durable(path, "two");
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  CHECK(text == "two");
  fs::remove_all(dir);
}

TEST_CASE("journal: process_alive tells a live process from a dead or zombie one") {
  CHECK(hoist::process_alive(::getpid()));
  CHECK_FALSE(hoist::process_alive(0));
  pid_t child = fork();
  if (child == 0) _exit(0);
  usleep(100 * 1000);
  CHECK_FALSE(hoist::process_alive(child));  // exited, not yet reaped: a zombie
  waitpid(child, nullptr, 0);
  CHECK_FALSE(hoist::process_alive(child));
}
