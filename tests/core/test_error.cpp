// hoist::error_of: what a failed coroutine's exception_ptr becomes, for the completion
// handlers of co_spawn (the REST layer's workers, the Kubernetes watches).
#include <doctest/doctest.h>
#include <hoist/error.hpp>

#include <stdexcept>

TEST_CASE("error_of: an Error stays itself, another std::exception is internal with its words") {
  auto kept = hoist::error_of(std::make_exception_ptr(hoist::Error(hoist::Code::not_found, "no such pod", {{"pod", "a"}})));
  CHECK(kept.code() == hoist::Code::not_found);
  CHECK(kept.message() == "no such pod");
  CHECK(kept.details()["pod"] == "a");
  auto other = hoist::error_of(std::make_exception_ptr(std::runtime_error("bad_alloc-ish")));
  CHECK(other.code() == hoist::Code::internal);
  CHECK(other.message() == "bad_alloc-ish");
  CHECK_THROWS_AS(hoist::error_of(std::make_exception_ptr(42)), int);
}
