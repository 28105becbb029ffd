#include <charconv>
#include <string>

#include "core/backend.hpp"
#include "hive_gpu/context.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu {

std::vector<BackendStatus> Context::backends() {
  std::vector<BackendStatus> out;
  for (const auto& b : detail::registry()) out.push_back(b->status());
  return out;
}

std::vector<DeviceInfo> Context::devices() {
  std::vector<DeviceInfo> out;
  for (const auto& b : detail::registry())
    for (const auto& d : b->devices()) out.push_back(d->info());
  return out;
}

Context Context::open(std::string_view spec) {
  const auto& reg = detail::registry();
  if (spec.empty() || spec == "auto") {
    // The registry is sorted by priority, GPUs first; the CPU always has a device. A GPU API's
    // CPU implementation (lavapipe behind Vulkan) is slower than the CPU backend: skipped.
    for (const auto& b : reg)
      for (const auto& d : b->devices())
        if (b->name() == "cpu" || d->info().device_type != "cpu") return Context(d);
    throw Error(ErrorCode::DeviceUnavailable, "no backend has a device (not even the CPU)");
  }
  std::string_view name = spec;
  std::size_t ordinal = 0;
  if (auto colon = spec.find(':'); colon != std::string_view::npos) {
    name = spec.substr(0, colon);
    std::string_view num = spec.substr(colon + 1);
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), ordinal);
    if (ec != std::errc() || p != num.data() + num.size())
      throw Error(ErrorCode::DeviceUnavailable, "bad device spec '" + std::string(spec) +
                                                    "' (expected auto, <backend> or <backend>:<ordinal>)");
  }
  for (const auto& b : reg) {
    if (b->name() != name) continue;
    BackendStatus st = b->status();
    if (!st.compiled || !st.available)
      throw Error(ErrorCode::DeviceUnavailable, "backend '" + std::string(name) + "': " + st.reason);
    auto devs = b->devices();
    if (ordinal >= devs.size())
      throw Error(ErrorCode::DeviceUnavailable, "backend '" + std::string(name) + "' has " +
                                                    std::to_string(devs.size()) + " device(s); '" +
                                                    std::string(spec) + "' does not exist");
    return Context(devs[ordinal]);
  }
  throw Error(ErrorCode::DeviceUnavailable, "unknown backend '" + std::string(name) +
                                                "' (known: cpu, cuda, hip, vulkan; see `hive-gpu info`)");
}

const DeviceInfo& Context::info() const { return device_->info(); }

}  // namespace hive::gpu
