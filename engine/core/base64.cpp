#include "hoist/base64.hpp"

#include <hoist/error.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>

namespace hoist {

std::string base64_decode(std::string_view in, std::string_view what) {
  std::string clean;
  clean.reserve(in.size() + 3);
  for (char c : in)
    if (!std::isspace(static_cast<unsigned char>(c))) clean += c;
  if (clean.size() % 4) clean.append(4 - clean.size() % 4, '=');
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()), static_cast<int>(clean.size()));
  if (n < 0) throw Error(Code::invalid_argument, std::string(what) + " is not valid base64");
  std::size_t pad = 0;
  while (pad < 2 && pad < clean.size() && clean[clean.size() - 1 - pad] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

std::string base64_encode(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

}  // namespace hoist
