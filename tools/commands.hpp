// hive-gpu command: the subcommands. Each returns the process exit status
// (0 ok, 1 failure, 2 bad command line).
#pragma once

namespace hive::gpu::tool {

// `hive-gpu info [--json]`: backends and devices.
int run_info(int argc, const char* const* argv, int first);
// `hive-gpu bench ...`: build a FlatIndex on a data set and time batched searches.
int run_bench(int argc, const char* const* argv, int first);

}  // namespace hive::gpu::tool
