// Settings the backends read from the environment: tuning knobs and A/B switches.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace hive::gpu::detail {

// Set, non-empty and not "0".
inline bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

// A positive integer, or `fallback` (unset, empty, not a number, or 0).
inline std::size_t env_size(const char* name, std::size_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const unsigned long long x = std::strtoull(v, &end, 10);
  return (end != nullptr && *end == '\0' && x > 0) ? std::size_t(x) : fallback;
}

}  // namespace hive::gpu::detail
