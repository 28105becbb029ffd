#pragma once
#include <memory>

#include "core/backend.hpp"

namespace hive::gpu::cpu {
std::unique_ptr<detail::FlatStore> make_cpu_flat_store(const detail::StoreConfig& cfg);
}
