#pragma once
// An asynchronous operation in flight on the engine's loop. Cancelling it makes its
// completion handler run (soon, on the loop) with Error{Code::cancelled}.
#include <hoist/error.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <variant>

namespace hoist {

class Operation {
 public:
  virtual ~Operation() = default;
  virtual void cancel() = 0;
};
using OperationPtr = std::shared_ptr<Operation>;

// Operation backed by a plain function; handy for timers and small adapters.
class FunctionOperation : public Operation {
 public:
  explicit FunctionOperation(std::function<void()> fn) : fn_(std::move(fn)) {}
  void cancel() override {
    if (auto fn = std::exchange(fn_, nullptr)) fn();
  }

 private:
  std::function<void()> fn_;
};

// Result of an asynchronous operation: a value or an Error.
template <class T>
class Outcome {
 public:
  Outcome(T value) : v_(std::move(value)) {}
  Outcome(Error error) : v_(std::move(error)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }
  T* operator->() { return &value(); }

 private:
  std::variant<T, Error> v_;
};

template <class T>
using Completion = std::function<void(Outcome<T>)>;

}  // namespace hoist
