// Internal: HNSW files as one-level graphs, so that GraphIndex (a GPU-built fixed-degree graph)
// saves files HnswIndex opens on the CPU, and opens HnswIndex's files (their level 0). The file
// format lives in hnsw_index.cpp alone; this is its door for GraphIndex.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "hive_gpu/types.hpp"

namespace hive::gpu::detail {

struct HnswLevel0 {
  std::size_t dim = 0;
  Metric metric = Metric::L2;
  int M = 16;              // level 0 holds up to 2 M links per node
  int ef_search = 64;
  int ef_construction = 200;
  uint64_t seed = 1;
  int64_t next_id = 0;
  std::vector<int64_t> ids;     // per node; kNoId for a deleted node (it still routes)
  std::vector<float> rows;      // per node, dim floats (decoded from the file's storage)
  std::vector<uint32_t> links;  // per node, 2 M node indices, 0xffffffff past its last
  // Level 1 (written only): nodes linked to their M nearest among themselves; the first is the
  // entry point. Empty: one level, entry 0.
  std::vector<uint32_t> upper;
};

struct HnswAccess {
  // Opens an HNSW file with every check HnswIndex::load makes; returns its level 0.
  static HnswLevel0 read_level0(const std::string& path);
  // Writes g as an fp32 HNSW file: level 0 from g.links (0xffffffff anywhere is dropped), and
  // level 1 over g.upper when it is not empty.
  static void write_level0(const std::string& path, const HnswLevel0& g);
};

}  // namespace hive::gpu::detail
