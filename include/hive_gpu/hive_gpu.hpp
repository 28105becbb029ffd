// hive-gpu: vector similarity search on every GPU vendor and the CPU. Include this one header.
#pragma once
#include "hive_gpu/context.hpp"
#include "hive_gpu/device.hpp"
#include "hive_gpu/error.hpp"
#include "hive_gpu/flat_index.hpp"
#include "hive_gpu/graph_index.hpp"
#include "hive_gpu/hnsw_index.hpp"
#include "hive_gpu/index.hpp"
#include "hive_gpu/types.hpp"
#include "hive_gpu/version.hpp"
