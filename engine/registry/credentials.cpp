// Where credentials come from besides explicit ones: docker's config.json (`auths`,
// `credHelpers`, `credsStore`) and docker-credential-<helper> programs.
#include <hoist/registry.hpp>
#include <hoist/base64.hpp>
#include <hoist/json.hpp>

#include <cstdlib>

namespace hoist::registry {
namespace {

constexpr std::string_view kDockerHubKey = "https://index.docker.io/v1/";

// An `auths` key may be a bare host, a URL (https://host/v1/) or a docker hub alias.
std::string key_host(std::string_view key) {
  std::string_view h = key;
  for (std::string_view scheme : {"https://", "http://"})
    if (h.substr(0, scheme.size()) == scheme) h.remove_prefix(scheme.size());
  h = h.substr(0, h.find('/'));
  if (h == "index.docker.io" || h == "registry-1.docker.io" || h == "docker.io") return "docker.io";
  return std::string(h);
}

std::string str_field(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

Credentials from_auth_entry(const nlohmann::json& e, std::string_view key) {
  Credentials c;
  c.source = "config";
  if (!e.is_object()) return c;
  std::string auth = str_field(e, "auth");
  if (!auth.empty()) {
    std::string decoded = base64_decode(auth, "config.json auths[\"" + std::string(key) + "\"].auth");
    auto colon = decoded.find(':');
    if (colon == std::string::npos)
      throw Error(Code::invalid_argument, "config.json auths[\"" + std::string(key) +
                                              "\"].auth does not decode to user:password");
    c.username = decoded.substr(0, colon);
    c.password = decoded.substr(colon + 1);
  } else {
    c.username = str_field(e, "username");
    c.password = str_field(e, "password");
  }
  c.identity_token = str_field(e, "identitytoken");
  c.registry_token = str_field(e, "registrytoken");
  return c;
}

}  // namespace

std::string docker_config_path() {
  if (const char* dir = std::getenv("DOCKER_CONFIG"); dir && *dir)
    return std::string(dir) + "/config.json";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "") + "/.docker/config.json";
}

ConfigLookup lookup_docker_config(const nlohmann::json& config, std::string_view registry) {
  ConfigLookup out;
  if (!config.is_object()) throw Error(Code::invalid_argument, "docker config.json is not a JSON object");
  std::string host = key_host(registry);

  // docker's order: a registry's own helper, then the default store, then inline auths
  if (auto helpers = config.find("credHelpers"); helpers != config.end() && helpers->is_object()) {
    for (auto& [key, helper] : helpers->items())
      if (key_host(key) == host && helper.is_string() && !helper.get<std::string>().empty()) {
        out.helper = helper.get<std::string>();
        return out;
      }
  }
  if (std::string store = str_field(config, "credsStore"); !store.empty()) {
    out.helper = store;
    return out;
  }
  if (auto auths = config.find("auths"); auths != config.end() && auths->is_object()) {
    // an exact key wins over a URL form of the same host
    for (int pass = 0; pass < 2 && !out.credentials; ++pass)
      for (auto& [key, entry] : auths->items()) {
        bool match = pass == 0 ? (key == host || (host == "docker.io" && key == kDockerHubKey))
                               : key_host(key) == host;
        if (!match) continue;
        auto c = from_auth_entry(entry, key);
        if (!c.empty()) out.credentials = std::move(c);
        break;
      }
  }
  return out;
}

Credentials parse_helper_output(std::string_view output, std::string_view helper) {
  auto j = hoist::parse_json_or_discarded(output);
  std::string who = "docker-credential-" + std::string(helper);
  if (j.is_discarded() || !j.is_object())
    throw Error(Code::tool_failed, who + " get: output is not a JSON object");
  Credentials c;
  c.source = "helper:" + std::string(helper);
  std::string user = str_field(j, "Username");
  std::string secret = str_field(j, "Secret");
  if (user == "<token>") {
    c.identity_token = secret;  // docker's marker for an identity (refresh) token
  } else {
    c.username = user;
    c.password = secret;
  }
  return c;
}

}  // namespace hoist::registry
