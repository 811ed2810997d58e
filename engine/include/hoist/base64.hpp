#pragma once
// Base64 for the engine's readers of encoded data (docker config.json auths, kubeconfig
// *-data fields, Kubernetes Secret data, ARM's kubeconfig values) and for Basic credentials
// (the registry, hoist.mlflow through core.base64_encode): one decoder and one encoder,
// OpenSSL's.
#include <string>
#include <string_view>

namespace hoist {

// Standard base64 (RFC 4648 alphabet) to bytes. Whitespace is skipped and missing padding is
// tolerated; anything else raises invalid_argument "<what> is not valid base64".
std::string base64_decode(std::string_view in, std::string_view what);

// Bytes to standard base64, padded, on one line.
std::string base64_encode(std::string_view in);

}  // namespace hoist
