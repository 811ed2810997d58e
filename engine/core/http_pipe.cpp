// BodyPipe: one transfer's response body becomes another's request body through a bounded
// buffer (registry blob copies across hosts), with pause/resume on both sides.
#include <hoist/http.hpp>

#include <algorithm>
#include <cstring>

namespace hoist {

void BodyPipe::connect(HttpRequest& source, HttpRequest& sink) {
  std::weak_ptr<BodyPipe> w = weak_from_this();
  if (w.expired()) throw Error(Code::internal, "BodyPipe must be owned by a shared_ptr");

  // A non-2xx source is an error page, not the blob: never pipe it into the sink.
  source.on_headers = [w, user = std::move(source.on_headers)](long status, const Headers& h) {
    if (user) user(status, h);
    if (status >= 200 && status < 300) return;
    if (auto p = w.lock()) {
      p->failed_ = true;
      if (p->sink) p->sink->cancel();
    }
  };

  source.on_data = [w](std::string_view piece) {
    auto p = w.lock();
    if (!p || p->failed_) return true;  // nobody reads it: drop it
    p->buffer_.append(piece);
    std::size_t held = p->buffer_.size() - p->head_;
    p->max_buffered_ = std::max(p->max_buffered_, held);
    if (p->sink_paused_) {
      p->sink_paused_ = false;
      if (p->sink) p->sink->resume();
    }
    if (held < p->capacity_) return true;
    p->source_paused_ = true;
    ++p->pauses_;
    return false;
  };

  sink.read_body = [w](char* out, std::size_t size) -> std::size_t {
    auto p = w.lock();
    if (!p) return 0;
    std::size_t held = p->buffer_.size() - p->head_;
    if (held == 0) {
      if (p->ended_) return 0;
      p->sink_paused_ = true;
      return HttpClient::kPause;
    }
    std::size_t n = std::min(size, held);
    std::memcpy(out, p->buffer_.data() + p->head_, n);
    p->head_ += n;
    if (p->head_ * 2 >= p->buffer_.size()) {  // compact now and then, not on every read
      p->buffer_.erase(0, p->head_);
      p->head_ = 0;
    }
    if (p->source_paused_ && held - n <= p->capacity_ / 2) {
      p->source_paused_ = false;
      if (p->source) p->source->resume();
    }
    return n;
  };
}

void BodyPipe::source_done(const Outcome<HttpResponse>& outcome) {
  ended_ = true;
  if (!outcome.ok() || failed_) {
    failed_ = true;
    if (sink) sink->cancel();
  } else if (sink_paused_) {
    sink_paused_ = false;
    if (sink) sink->resume();  // reads the rest, then the end
  }
}

void BodyPipe::sink_done(const Outcome<HttpResponse>& outcome) {
  if (source && (!outcome.ok() || !ended_)) source->cancel();
}

}  // namespace hoist
