// Reads and small writes: resolve, exists, manifest, tags, catalog, delete, retag.
#include "registry/internal.hpp"

namespace hoist::registry::detail {
namespace {

std::int64_t content_length(const HttpResponse& r) {
  std::string v = r.header("content-length");
  if (v.empty()) return -1;
  try {
    return std::stoll(v);
  } catch (...) {
    return -1;
  }
}

std::string manifest_path(const std::string& repository, const std::string& target) {
  return "/v2/" + repository + "/manifests/" + target;
}

}  // namespace

Task<Manifest> ClientImpl::get_manifest(Ctx ctx, Endpoint ep, std::string repository,
                                        std::string target, std::vector<std::string> scopes,
                                        std::string what) {
  Req req{"GET", manifest_path(repository, target), {{"Accept", media::accept_manifests()}}, {}, scopes, what};
  auto r = co_await send(ctx, ep, req);
  if (r.status != 200) fail(ctx, r, req, ep);
  Manifest m;
  m.bytes = std::move(r.body);
  bool by_digest = target.find(':') != std::string::npos;
  std::string claimed = by_digest ? target : r.header("docker-content-digest");
  if (!claimed.empty()) {
    if (!digest_matches(m.bytes, claimed))
      throw digest_mismatch(what + ": manifest", claimed, sha256_digest(m.bytes));
    m.resolved.digest = claimed;
  } else {
    m.resolved.digest = sha256_digest(m.bytes);
  }
  try {
    m.content = parse_manifest(m.bytes, r.header("content-type"));
  } catch (const Error& e) {
    throw Error(Code::internal, what + ": " + e.message(), false,
                {{"reason", "bad_manifest"}, {"url", absolute_url(ep, req.target)}});
  }
  m.resolved.media_type = m.content.media_type;
  m.resolved.size = static_cast<std::int64_t>(m.bytes.size());
  co_return m;
}

Task<std::optional<Manifest>> ClientImpl::planned_source(Ctx ctx, Endpoint ep, std::string repository,
                                                         std::string target, std::vector<std::string> scopes,
                                                         std::string what) {
  std::optional<Error> missing;
  try {
    co_return co_await get_manifest(ctx, ep, repository, target, scopes, what);
  } catch (const Error& e) {
    if (!ctx->options.dry_run || e.code() != Code::not_found) throw;
    missing = e;
  }
  ctx->emit("warn", "plan", what + ": the source does not exist (yet); planned without reading it",
       {{"error", missing->message()}});
  co_return std::nullopt;
}

Task<Resolved> ClientImpl::do_resolve(Ctx ctx, Reference image) {
  Endpoint ep = endpoint(ctx, image.registry);
  std::vector<std::string> scopes{repo_scope(image.repository, "pull")};
  std::string what = "resolve " + image.str();
  Req head{"HEAD", manifest_path(image.repository, image.target()),
           {{"Accept", media::accept_manifests()}}, {}, scopes, what};
  auto r = co_await send(ctx, ep, head);
  if (r.status == 200) {
    std::string digest = r.header("docker-content-digest");
    std::string type = r.header("content-type");
    type = type.substr(0, type.find(';'));
    if (!digest.empty() && (image.digest.empty() || digest == image.digest) && media::is_manifest(type)) {
      check_digest(digest);
      co_return Resolved{digest, type, content_length(r)};
    }
  }
  // no digest header, or an error whose body a HEAD cannot carry: GET tells the whole story
  Manifest m = co_await get_manifest(ctx, ep, image.repository, image.target(), scopes, what);
  co_return m.resolved;
}

OperationPtr ClientImpl::resolve(Reference image, CallOptions o, Completion<Resolved> done) {
  auto self = std::static_pointer_cast<ClientImpl>(shared_from_this());
  return start<Resolved>(std::move(o), [self, image](Ctx ctx) { return self->do_resolve(ctx, image); },
                         std::move(done));
}

OperationPtr ClientImpl::exists(Reference image, CallOptions o, Completion<bool> done) {
  auto self = std::static_pointer_cast<ClientImpl>(shared_from_this());
  auto body = [self, image](Ctx ctx) -> Task<bool> {
    Endpoint ep = self->endpoint(ctx, image.registry);
    std::vector<std::string> scopes{repo_scope(image.repository, "pull")};
    std::string what = "exists " + image.str();
    Req head{"HEAD", manifest_path(image.repository, image.target()),
             {{"Accept", media::accept_manifests()}}, {}, scopes, what};
    auto r = co_await self->send(ctx, ep, head);
    if (r.status == 200) co_return true;
    if (r.status == 404) co_return false;
    co_await self->get_manifest(ctx, ep, image.repository, image.target(), scopes, what);
    co_return true;  // the GET succeeded where the HEAD did not: it exists
  };
  return start<bool>(std::move(o), body, std::move(done));
}

OperationPtr ClientImpl::manifest(Reference image, CallOptions o, Completion<Manifest> done) {
  auto self = std::static_pointer_cast<ClientImpl>(shared_from_this());
  auto body = [self, image](Ctx ctx) -> Task<Manifest> {
    Endpoint ep = self->endpoint(ctx, image.registry);
    std::vector<std::string> scopes{repo_scope(image.repository, "pull")};
    co_return co_await self->get_manifest(ctx, ep, image.repository, image.target(), scopes,
                                          "manifest " + image.str());
  };
  return start<Manifest>(std::move(o), body, std::move(done));
}

// Follows Link: <...>; rel="next" until the last page (or `limit` names).
static Task<std::vector<std::string>> list_pages(ClientImpl* self, Ctx ctx, Endpoint ep, Req req,
                                                 std::string field, int limit) {
  auto out = std::make_shared<std::vector<std::string>>();
  std::function<bool(nlohmann::json&)> on_page = [out, field, limit](nlohmann::json& page) {
    if (page.contains(field) && page[field].is_array())
      for (auto& v : page[field])
        if (v.is_string()) out->push_back(v.get<std::string>());
    if (limit > 0 && static_cast<int>(out->size()) >= limit) {
      out->resize(static_cast<std::size_t>(limit));
      return false;
    }
    return true;
  };
  co_await rest::paginate(self->rest(), ctx, self->rest_request(ctx, ep, req), rest::next_by_link(), on_page);
  co_return std::move(*out);
}

OperationPtr ClientImpl::tags(Reference repository, int page_size, int limit, CallOptions o,
                              Completion<std::vector<std::string>> done) {
  auto self = std::static_pointer_cast<ClientImpl>(shared_from_this());
  auto body = [self, repository, page_size, limit](Ctx ctx) {
    Endpoint ep = self->endpoint(ctx, repository.registry);
    Req req{"GET", "/v2/" + repository.repository + "/tags/list", {}, {},
            {repo_scope(repository.repository, "pull")}, "tags " + repository.name()};
    if (page_size > 0) req.target += "?n=" + std::to_string(page_size);
    return list_pages(self.get(), ctx, ep, req, "tags", limit);
  };
  return start<std::vector<std::string>>(std::move(o), body, std::move(done));
}

OperationPtr ClientImpl::catalog(std::string registry, int page_size, int limit, CallOptions o,
                                 Completion<std::vector<std::string>> done) {
  auto self = std::static_pointer_cast<ClientImpl>(shared_from_this());
  auto body = [self, registry, page_size, limit](Ctx ctx) {
    Endpoint ep = self->endpoint(ctx, registry);
    Req req{"GET", "/v2/_catalog", {}, {}, {"registry:catalog:*"}, "catalog " + registry};
    if (page_size > 0) req.target += "?n=" + std::to_string(page_size);
    return list_pages(self.get(), ctx, ep, req, "repositories", limit);
  };
  return start<std::vector<std::string>>(std::move(o), body, std::move(done));
}

OperationPtr ClientImpl::remove(Reference image, CallOptions o, Completion<CopyResult> done) {
  auto self = std::static_pointer_cast<ClientImpl>(shared_from_this());
  auto body = [self, image](Ctx ctx) -> Task<CopyResult> {
    Endpoint ep = self->endpoint(ctx, image.registry);
    CopyResult res;
    // registries delete manifests by digest only: a tag is resolved first
    std::vector<std::string> pull{repo_scope(image.repository, "pull")};
    auto found = co_await self->planned_source(ctx, ep, image.repository, image.target(), pull,
                                               "delete " + image.str());
    Resolved r = found ? found->resolved : Resolved{};  // not found: dry-run only
    res.digest = r.digest;
    res.media_type = r.media_type;
    res.image = found ? image.name() + "@" + r.digest : image.str();
    Req del{"DELETE", manifest_path(image.repository, found ? r.digest : image.target()), {}, {},
            {repo_scope(image.repository, "delete")}, "delete " + image.str(), "delete_manifest"};
    if (found) del.fields = {{"digest", r.digest}};
    auto resp = co_await self->send(ctx, ep, del);
    if (resp.planned) co_return planned_result(ctx, res);
    if (resp.status != 202 && resp.status != 200) self->fail(ctx, resp, del, ep);
    ctx->emit("info", "registry.delete", "deleted " + res.image, {{"image", res.image}});
    co_return res;
  };
  return start<CopyResult>(std::move(o), body, std::move(done));
}

OperationPtr ClientImpl::retag(Reference image, std::string tag, CallOptions o, Completion<CopyResult> done) {
  auto self = std::static_pointer_cast<ClientImpl>(shared_from_this());
  auto body = [self, image, tag](Ctx ctx) -> Task<CopyResult> {
    Endpoint ep = self->endpoint(ctx, image.registry);
    std::vector<std::string> scopes{repo_scope(image.repository, "pull,push")};
    std::string what = "retag " + image.str() + " as " + tag;
    auto found = co_await self->planned_source(ctx, ep, image.repository, image.target(), scopes, what);
    CopyResult res;
    if (!found) {  // dry-run only
      rest::plan(ctx, rest::PlanStep{"PUT", absolute_url(ep, manifest_path(image.repository, tag)), "put_manifest"});
      res.image = image.name() + ":" + tag;
      co_return planned_result(ctx, res);
    }
    Manifest& m = *found;
    res.digest = m.resolved.digest;
    res.media_type = m.resolved.media_type;
    res.image = image.name() + ":" + tag + "@" + m.resolved.digest;
    Req put{"PUT", manifest_path(image.repository, tag), {{"Content-Type", m.resolved.media_type}},
            m.bytes, scopes, what, "put_manifest", {{"digest", m.resolved.digest}, {"size", m.resolved.size}}};
    auto r = co_await self->send(ctx, ep, put);
    if (r.planned) co_return planned_result(ctx, res);
    if (r.status != 201 && r.status != 200) self->fail(ctx, r, put, ep);
    if (auto d = r.header("docker-content-digest"); !d.empty() && d != m.resolved.digest)
      throw digest_mismatch(what, m.resolved.digest, d);
    res.manifests = 1;
    co_return res;
  };
  return start<CopyResult>(std::move(o), body, std::move(done));
}

}  // namespace hoist::registry::detail
