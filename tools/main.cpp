// hive-gpu: the command-line tool. `hive-gpu info`, `hive-gpu bench`.
#include <cstring>
#include <exception>
#include <iostream>
#include <string_view>

#include "args.hpp"
#include "commands.hpp"
#include "hive_gpu/hive_gpu.hpp"

namespace {

void usage(std::ostream& os) {
  os << "usage: hive-gpu <command> [options]\n\n"
        "commands:\n"
        "  info     list backends and devices (--json for JSON)\n"
        "  bench    build a flat index on a data set and time batched k-NN searches\n"
        "  version  print the version\n\n"
        "`hive-gpu <command> --help` describes a command's options.\n";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace hive::gpu;
  if (argc < 2) {
    usage(std::cerr);
    return 2;
  }
  const std::string_view cmd = argv[1];
  try {
    if (cmd == "info") return tool::run_info(argc, argv, 2);
    if (cmd == "bench") return tool::run_bench(argc, argv, 2);
    if (cmd == "version" || cmd == "--version") {
      std::cout << "hive-gpu " << kVersionString << '\n';
      return 0;
    }
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      usage(std::cout);
      return 0;
    }
    std::cerr << "hive-gpu: unknown command '" << cmd << "'\n\n";
    usage(std::cerr);
    return 2;
  } catch (const tool::UsageError& e) {
    std::cerr << "hive-gpu " << cmd << ": " << e.what() << "\n(see `hive-gpu " << cmd << " --help`)\n";
    return 2;
  } catch (const Error& e) {
    std::cerr << "hive-gpu " << cmd << ": " << e.what() << '\n';
    return e.code() == ErrorCode::UnknownMetric || e.code() == ErrorCode::InvalidArgument ? 2 : 1;
  } catch (const std::exception& e) {
    std::cerr << "hive-gpu " << cmd << ": " << e.what() << '\n';
    return 1;
  }
}
