#pragma once
#include <memory>

#include "core/backend.hpp"

namespace hive::gpu::cuda {
// A flat store in the memory of CUDA device `ordinal`.
std::unique_ptr<detail::FlatStore> make_cuda_flat_store(const detail::StoreConfig& cfg, int ordinal);
}  // namespace hive::gpu::cuda
