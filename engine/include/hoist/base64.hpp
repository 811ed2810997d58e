#pragma once
// Base64 for the engine's readers of encoded data (docker config.json auths, kubeconfig
// *-data fields, Kubernetes Secret data, ARM's kubeconfig values): one decoder, OpenSSL's.
#include <string>
#include <string_view>

namespace hoist {

// Standard base64 (RFC 4648 alphabet) to bytes. Whitespace is skipped and missing padding is
// tolerated; anything else raises invalid_argument "<what> is not valid base64".
std::string base64_decode(std::string_view in, std::string_view what);

}  // namespace hoist
