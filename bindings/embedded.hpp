#pragma once
#include <cstddef>

namespace hoist::lua {

// One Lua file of stdlib/ or scripts/, compiled to bytecode at build time.
struct EmbeddedChunk {
  const char* module;     // "hoist.pipeline", "scripts.container.v1"
  const char* chunkname;  // "@stdlib/hoist/pipeline.lua": tracebacks name the real file
  const char* data;
  std::size_t size;
};

extern const EmbeddedChunk kEmbedded[];  // terminated by {nullptr, ...}

}  // namespace hoist::lua
