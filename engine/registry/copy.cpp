// registry.copy: an image by digest, with every child of an index, from one repository to
// another. Inside one registry blobs are mounted (no bytes move); across registries they
// stream from source to destination. Children go before parents and the destination tag
// is written last, so a copy that fails half-way leaves no new tag behind.
#include "registry/internal.hpp"

#include <set>

namespace hoist::registry::detail {
namespace {

constexpr int kMaxDepth = 8;  // an index of indexes of ... deeper than this is a loop

struct CopyState {
  Reference from, to;
  Endpoint src, dst;
  bool same_registry = false;
  std::vector<std::string> src_scopes, dst_scopes;
  std::vector<Manifest> order;  // children first, the top manifest last
  std::vector<Descriptor> blobs;
  std::set<std::string> seen;
  CopyResult res;
};
using State = std::shared_ptr<CopyState>;

std::string blob_path(const std::string& repository, const std::string& digest) {
  return "/v2/" + repository + "/blobs/" + digest;
}

}  // namespace

static Task<void> collect(ClientImpl* self, Ctx ctx, State st, Manifest m, int depth) {
  if (depth > kMaxDepth)
    throw Error(Code::invalid_argument, "copy " + st->from.str() + ": indexes nested deeper than " +
                                            std::to_string(kMaxDepth));
  if (m.content.index) {
    for (const Descriptor& child : m.content.manifests) {
      if (!st->seen.insert(child.digest).second) continue;
      std::string what = "copy " + st->from.name() + "@" + child.digest;
      Manifest cm = co_await self->get_manifest(ctx, st->src, st->from.repository, child.digest,
                                                st->src_scopes, what);
      if (child.size >= 0 && cm.resolved.size != child.size)
        throw Error(Code::internal, what + ": index says " + std::to_string(child.size) + " bytes, manifest has " +
                                        std::to_string(cm.resolved.size), false,
                    {{"reason", "size_mismatch"}, {"digest", child.digest}});
      co_await collect(self, ctx, st, std::move(cm), depth + 1);
    }
  } else {
    for (const Descriptor& b : m.content.blobs)
      if (st->seen.insert(b.digest).second) st->blobs.push_back(b);
  }
  st->order.push_back(std::move(m));
}

// One blob: skip it if the destination has it, else mount it (same registry) or stream it.
static Task<void> copy_blob(ClientImpl* self, Ctx ctx, State st, Descriptor b) {
  const std::string what = "copy blob " + b.digest + " to " + st->to.name();
  const nlohmann::json fields = {{"digest", b.digest}, {"size", b.size}};
  Req head{"HEAD", blob_path(st->to.repository, b.digest), {}, {}, st->dst_scopes, what};
  auto h = co_await self->send(ctx, st->dst, head);
  if (h.status == 200) {
    ++st->res.blobs_skipped;
    ctx->emit("debug", "registry.blob", "skipped " + b.digest + " (already there)",
              {{"digest", b.digest}, {"action", "skipped"}});
    co_return;
  }
  if (h.status != 404) self->fail(ctx, h, head, st->dst);

  const std::string uploads = "/v2/" + st->to.repository + "/blobs/uploads/";
  std::string location;
  if (st->same_registry) {
    Req mount{"POST", uploads + "?mount=" + rest::url_encode(b.digest) + "&from=" + rest::url_encode(st->from.repository),
              {}, {}, st->dst_scopes, what, "mount_blob", fields};
    auto r = co_await self->send(ctx, st->dst, mount);
    if (r.planned || r.status == 201) {
      ++st->res.blobs_mounted;
      if (!r.planned)
        ctx->emit("debug", "registry.blob", "mounted " + b.digest, {{"digest", b.digest}, {"action", "mounted"}});
      co_return;
    }
    if (r.status != 202) self->fail(ctx, r, mount, st->dst);
    location = r.header("location");  // not mountable: the registry opened an upload instead
  }

  // A broken upload session cannot be resumed reliably: each try opens a new one.
  rest::Attempt upload = [self, ctx, st, b, what, fields, uploads, &location](int, bool) -> Task<std::optional<rest::Retry>> {
    std::string at = std::exchange(location, {});
    if (at.empty()) {
      Req post{"POST", uploads, {}, {}, st->dst_scopes, what, "upload_blob", fields};
      auto r = co_await self->send(ctx, st->dst, post);
      if (r.planned) {
        ++st->res.blobs_copied;
        st->res.bytes += b.size;
        co_return std::nullopt;
      }
      if (r.status != 202) self->fail(ctx, r, post, st->dst);
      at = r.header("location");
      if (at.empty())
        throw Error(Code::internal, what + ": the registry opened an upload without a Location", false,
                    {{"registry", st->dst.registry}});
    }
    std::int64_t n = co_await self->stream_blob(ctx, st->src, st->from.repository, st->dst, st->dst_scopes,
                                                absolute_url(st->dst, at), b);
    ++st->res.blobs_copied;
    st->res.bytes += n;
    ctx->emit("debug", "registry.blob", "copied " + b.digest, {{"digest", b.digest}, {"action", "copied"}, {"bytes", n}});
    co_return std::nullopt;
  };
  rest::OnRetry warn = [ctx, b](int n, const rest::Retry& why, double) {
    ctx->emit("warn", "registry.retry", why.reason, {{"attempt", n}, {"digest", b.digest}});
  };
  co_await rest::retry_loop(ctx, ctx->options.retry, upload, warn);
}

static Task<void> put_manifest(ClientImpl* self, Ctx ctx, State st, const Manifest& m, std::string target) {
  std::string what = "copy " + st->from.str() + " to " + st->to.name() + ":" + target;
  Req put{"PUT", "/v2/" + st->to.repository + "/manifests/" + target,
          {{"Content-Type", m.resolved.media_type}}, m.bytes, st->dst_scopes, what, "put_manifest",
          {{"digest", m.resolved.digest}, {"size", m.resolved.size}}};
  auto r = co_await self->send(ctx, st->dst, put);
  if (!r.planned && r.status != 201 && r.status != 200) self->fail(ctx, r, put, st->dst);
  if (auto d = r.header("docker-content-digest"); !d.empty() && d != m.resolved.digest)
    throw digest_mismatch(what, m.resolved.digest, d);
  ++st->res.manifests;
}

Task<CopyResult> ClientImpl::do_copy(Ctx ctx, Reference from, Reference to) {
  auto st = std::make_shared<CopyState>();
  st->from = from;
  st->to = to;
  st->src = endpoint(ctx, from.registry);
  st->dst = endpoint(ctx, to.registry);
  st->same_registry = st->src.base == st->dst.base;
  st->dst_scopes = {repo_scope(to.repository, "pull,push")};
  if (st->same_registry && from.repository != to.repository)
    st->dst_scopes.push_back(repo_scope(from.repository, "pull"));  // mount needs both
  // one registry, one token: read the source with the destination's scopes
  st->src_scopes = st->same_registry ? st->dst_scopes : std::vector{repo_scope(from.repository, "pull")};

  if (!st->same_registry) {
    // authenticate at the destination once, up front: the blob workers then share one token,
    // and bad credentials fail before anything is read
    Req ping{"GET", "/v2/", {}, {}, st->dst_scopes, "copy to " + to.name()};
    auto p = co_await send(ctx, st->dst, ping);
    if (p.status == 401 || p.status == 403) fail(ctx, p, ping, st->dst);
  }
  std::string tag = !to.tag.empty() ? to.tag : to.digest.empty() ? from.tag : "";
  auto found = co_await planned_source(ctx, st->src, from.repository, from.target(), st->src_scopes,
                                       "copy " + from.str());
  if (!found) {  // dry-run only
    std::string target = tag.empty() ? to.digest.empty() ? "<digest>" : to.digest : tag;
    rest::plan(ctx, rest::PlanStep{"PUT", absolute_url(st->dst, "/v2/" + to.repository + "/manifests/" + target),
                                   "copy_image"});
    CopyResult res;
    res.image = to.name() + (tag.empty() ? "" : ":" + tag);
    co_return planned_result(ctx, res);
  }
  Manifest top = std::move(*found);
  if (!to.digest.empty() && to.digest != top.resolved.digest)
    throw Error(Code::invalid_argument, "copy: destination " + to.str() + " names digest " + to.digest +
                                            " but the source is " + top.resolved.digest);
  st->seen.insert(top.resolved.digest);
  co_await collect(this, ctx, st, std::move(top), 0);

  // named, not a temporary in the co_await expression: GCC 12 destroys those twice
  std::function<Task<void>(std::size_t)> one_blob = [self = this, ctx, st](std::size_t i) {
    return copy_blob(self, ctx, st, st->blobs[i]);
  };
  std::size_t limit = static_cast<std::size_t>(std::max(1, ctx->concurrency));
  co_await rest::for_each_bounded(ctx, st->blobs.size(), limit, one_blob);

  const Manifest& root = st->order.back();
  for (std::size_t i = 0; i + 1 < st->order.size(); ++i)
    co_await put_manifest(this, ctx, st, st->order[i], st->order[i].resolved.digest);
  std::string top_target = tag.empty() ? root.resolved.digest : tag;
  co_await put_manifest(this, ctx, st, root, top_target);  // the tag: last

  CopyResult res = st->res;
  res.digest = root.resolved.digest;
  res.media_type = root.resolved.media_type;
  res.image = to.name() + (tag.empty() ? "" : ":" + tag) + "@" + res.digest;
  if (ctx->options.dry_run) {
    res = planned_result(ctx, res);
  } else {
    ctx->emit("info", "registry.copy", "copied " + from.str() + " to " + res.image,
         {{"from", from.str()}, {"to", res.image}, {"blobs_copied", res.blobs_copied},
          {"blobs_mounted", res.blobs_mounted}, {"blobs_skipped", res.blobs_skipped}, {"bytes", res.bytes}});
  }
  co_return res;
}

OperationPtr ClientImpl::copy(Reference from, Reference to, CallOptions o, Completion<CopyResult> done) {
  auto self = std::static_pointer_cast<ClientImpl>(shared_from_this());
  return start<CopyResult>(std::move(o), [self, from, to](Ctx ctx) { return self->do_copy(ctx, from, to); },
                           std::move(done));
}

}  // namespace hoist::registry::detail
