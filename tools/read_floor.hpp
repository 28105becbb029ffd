// hive-gpu command: the "read floor", the time one streaming pass over a buffer as large as
// the index's storage takes, with every core reading its share.
#pragma once
#include <cstddef>

namespace hive::gpu::tool {

struct ReadFloor {
  std::size_t bytes = 0;
  unsigned threads = 0;
  int runs = 0;
  double best_ms = 0;    // fastest pass
  double gbps = 0;       // bytes / best pass, in 1e9 bytes per second
};

// Allocates `bytes`, touches it, then times `runs` passes in which `threads` threads (0: all
// cores) each sum their slice as 64-bit words. Returns the best pass.
ReadFloor measure_read_floor(std::size_t bytes, unsigned threads = 0, int runs = 20);

}  // namespace hive::gpu::tool
