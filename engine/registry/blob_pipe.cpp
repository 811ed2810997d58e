// Streams one blob from a source registry's GET into a destination's upload PUT, with a
// bounded buffer between them (the faster side pauses) and sha256 over the bytes on the
// way. The last byte is held back until the source is complete and its digest verified,
// so a blob whose content does not match its digest is never committed.
#include "registry/internal.hpp"

#include <cstring>

namespace hoist::registry::detail {
namespace {

namespace asio = boost::asio;

// Below this, fetch then put: two plain requests are simpler and as fast.
constexpr std::int64_t kStreamThreshold = 1 << 20;

struct PipeResult {
  std::optional<Outcome<HttpResponse>> src, dst;
  bool src_cancelled_by_us = false, dst_cancelled_by_us = false;
  std::string problem;  // "digest_mismatch" | "size_mismatch"
  std::string actual;
  std::int64_t received = 0;
  std::string src_body;  // what a failing source said
};

class Pipe : public std::enable_shared_from_this<Pipe> {
 public:
  Pipe(asio::io_context& io, Descriptor blob, std::size_t limit)
      : io_(io), blob_(std::move(blob)), limit_(std::max<std::size_t>(limit, 64 << 10)) {}

  OperationPtr start(HttpClient& http, HttpRequest get, HttpRequest put, Completion<PipeResult> done) {
    done_ = std::move(done);
    std::weak_ptr<Pipe> weak = weak_from_this();
    get.on_headers = [weak](long status, const Headers&) {
      if (auto p = weak.lock()) p->src_status_ = status;
    };
    get.on_data = [weak](std::string_view piece) {
      auto p = weak.lock();
      return p ? p->on_src_data(piece) : true;
    };
    put.read_body = [weak](char* buf, std::size_t size) {
      auto p = weak.lock();
      return p ? p->on_dst_read(buf, size) : HttpClient::kPause;
    };
    put.body_size = blob_.size;
    auto self = shared_from_this();
    src_ = http.request(std::move(get), [self](Outcome<HttpResponse> out) { self->on_src_done(std::move(out)); });
    dst_ = http.request(std::move(put), [self](Outcome<HttpResponse> out) { self->on_dst_done(std::move(out)); });
    return std::make_shared<FunctionOperation>([weak] {
      if (auto p = weak.lock()) {
        if (p->src_) p->src_->cancel();
        if (p->dst_) p->dst_->cancel();
      }
    });
  }

 private:
  std::size_t buffered() const { return buf_.size() - head_; }

  bool on_src_data(std::string_view piece) {
    if (src_status_ != 200) {  // an error body: keep some of it for the error message
      if (r_.src_body.size() < 16384) r_.src_body.append(piece.substr(0, 16384 - r_.src_body.size()));
      return true;
    }
    if (!r_.problem.empty()) return true;
    r_.received += static_cast<std::int64_t>(piece.size());
    if (r_.received > blob_.size) {
      r_.problem = "size_mismatch";
      cancel_dst();
      return true;
    }
    hash_.update(piece);
    buf_.append(piece);
    if (dst_paused_) wake(dst_, dst_paused_);
    if (buffered() >= limit_) {
      src_paused_ = true;
      return false;
    }
    return true;
  }

  std::size_t on_dst_read(char* out, std::size_t size) {
    std::size_t avail = buffered();
    // hold back the last byte until the whole blob is verified
    std::size_t allowed = avail;
    if (!verified_) {
      auto left = static_cast<std::size_t>(blob_.size - 1 - sent_);
      allowed = std::min(avail, left);
    }
    if (allowed == 0 || !r_.problem.empty()) {
      if (verified_ && avail == 0) return 0;
      dst_paused_ = true;
      return HttpClient::kPause;
    }
    std::size_t n = std::min(allowed, size);
    std::memcpy(out, buf_.data() + head_, n);
    head_ += n;
    sent_ += static_cast<std::int64_t>(n);
    if (head_ >= limit_ || head_ == buf_.size()) {  // compact now and then, not per read
      buf_.erase(0, head_);
      head_ = 0;
    }
    if (src_paused_ && buffered() <= limit_ / 2) wake(src_, src_paused_);
    return n;
  }

  // Resumes from the loop, never from inside the other transfer's callback.
  void wake(const std::shared_ptr<Transfer>& t, bool& paused) {
    paused = false;
    asio::post(io_, [w = std::weak_ptr<Transfer>(t)] {
      if (auto p = w.lock()) p->resume();
    });
  }

  void cancel_dst() {
    if (dst_ && !r_.dst) {
      r_.dst_cancelled_by_us = true;
      asio::post(io_, [t = dst_] { t->cancel(); });
    }
  }

  void on_src_done(Outcome<HttpResponse> out) {
    bool ok = out.ok() && out.value().status == 200;
    if (ok && r_.problem.empty()) {
      r_.actual = hash_.digest();
      if (r_.received != blob_.size) r_.problem = "size_mismatch";
      else if (r_.actual != blob_.digest) r_.problem = "digest_mismatch";
      else verified_ = true;
    }
    r_.src = std::move(out);
    if (verified_) {
      if (dst_paused_) wake(dst_, dst_paused_);
    } else {
      cancel_dst();
    }
    finish();
  }

  void on_dst_done(Outcome<HttpResponse> out) {
    bool ok = out.ok() && (out.value().status == 201 || out.value().status == 204);
    r_.dst = std::move(out);
    if (!ok && src_ && !r_.src) {
      r_.src_cancelled_by_us = true;
      asio::post(io_, [t = src_] { t->cancel(); });
    }
    finish();
  }

  void finish() {
    if (!r_.src || !r_.dst || !done_) return;
    auto done = std::exchange(done_, nullptr);
    src_.reset();
    dst_.reset();
    done(std::move(r_));
  }

  asio::io_context& io_;
  Descriptor blob_;
  std::size_t limit_;
  Completion<PipeResult> done_;
  std::shared_ptr<Transfer> src_, dst_;
  long src_status_ = 0;
  std::string buf_;
  std::size_t head_ = 0;
  std::int64_t sent_ = 0;
  bool src_paused_ = false, dst_paused_ = false, verified_ = false;
  Sha256 hash_;
  PipeResult r_;
};

}  // namespace

Task<std::int64_t> ClientImpl::stream_blob(Ctx ctx, Endpoint src, std::string src_repo, Endpoint dst,
                                           std::vector<std::string> dst_scopes, std::string location,
                                           Descriptor blob) {
  const std::string what = "copy blob " + blob.digest + " from " + src.registry + "/" + src_repo;
  std::vector<std::string> src_scopes{repo_scope(src_repo, "pull")};
  if (src.base == dst.base) src_scopes = dst_scopes;
  Req get{"GET", "/v2/" + src_repo + "/blobs/" + blob.digest, {}, {}, src_scopes, what};
  Req put{"PUT", rest::with_query(location, "digest", blob.digest),
          {{"Content-Type", "application/octet-stream"}}, {}, dst_scopes, what};

  bool sha256 = blob.digest.rfind("sha256:", 0) == 0;
  if (blob.size < kStreamThreshold || !sha256) {
    auto g = co_await send(ctx, src, get);
    if (g.status != 200) fail(ctx, g, get, src);
    if (static_cast<std::int64_t>(g.body.size()) != blob.size || !digest_matches(g.body, blob.digest))
      throw digest_mismatch(what, blob.digest, sha256_digest(g.body));
    put.body = std::move(g.body);
    auto p = co_await send(ctx, dst, put);
    if (p.status != 201 && p.status != 204) fail(ctx, p, put, dst);
    co_return blob.size;
  }

  HttpRequest hget, hput;
  hget.url = absolute_url(src, get.target);
  hget.timeout = 0;  // a big blob may take long: the pipe's progress is what matters
  if (auto a = co_await authorization(ctx, src, get.scopes); !a.empty()) hget.headers.emplace_back("Authorization", a);
  hput.method = "PUT";
  hput.url = absolute_url(dst, put.target);
  hput.timeout = 0;
  hput.headers = put.headers;
  if (auto a = co_await authorization(ctx, dst, put.scopes); !a.empty()) hput.headers.emplace_back("Authorization", a);

  auto pipe = std::make_shared<Pipe>(io_, blob, ctx->buffer);
  auto out = co_await rest::await_op<PipeResult>(ctx, [&](Completion<PipeResult> done) {
    return pipe->start(http_, std::move(hget), std::move(hput), std::move(done));
  });
  ctx->check();
  if (!out.ok()) throw out.error();
  PipeResult& r = out.value();

  // the first real cause wins: what the source did, then what the destination did
  if (!r.src_cancelled_by_us) {
    if (!r.src->ok()) throw Error(r.src->error().code(), what + ": " + r.src->error().message(),
                                  r.src->error().retryable(), {{"url", redact_url(hget.url)}});
    HttpResponse& s = r.src->value();
    if (s.status != 200) {
      s.body = r.src_body;
      if (s.status == 401) on_unauthorized(src, s);
      Error e = status_error(ctx, s, get, src);
      throw Error(e.code(), e.message(), e.retryable() || s.status == 401, e.details());
    }
  }
  if (!r.problem.empty()) {
    if (r.problem == "digest_mismatch") throw digest_mismatch(what, blob.digest, r.actual);
    throw Error(Code::internal, what + ": the source sent " + std::to_string(r.received) + " bytes, the blob has " +
                                    std::to_string(blob.size), false,
                {{"reason", "size_mismatch"}, {"expected", blob.size}, {"received", r.received}});
  }
  if (!r.dst_cancelled_by_us) {
    if (!r.dst->ok()) {
      // the upload broke on the wire (reset, cut, a resend curl could not rewind): the
      // registry went away mid-stream, which is worth a new upload
      const Error& e = r.dst->error();
      Code code = e.code() == Code::timeout ? Code::timeout : Code::unavailable;
      throw Error(code, what + ": upload to " + dst.registry + " broke off: " + e.message(), true,
                  {{"url", redact_url(hput.url)}, {"cause", e.to_json()}});
    }
    HttpResponse& d = r.dst->value();
    if (d.status != 201 && d.status != 204) {
      if (d.status == 401) on_unauthorized(dst, d);
      Error e = status_error(ctx, d, put, dst);
      throw Error(e.code(), e.message(), e.retryable() || d.status == 401, e.details());
    }
  }
  co_return r.received;
}

}  // namespace hoist::registry::detail
