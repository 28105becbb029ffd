// hive-gpu command: a small command-line option parser (--name value, --name=value, flags).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace hive::gpu::tool {

// Thrown for bad command lines; main() prints the message and the usage hint.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct OptionSpec {
  std::string name;       // without the leading "--"
  bool takes_value = true;
  std::string help;       // one line for --help
  std::string value_hint; // "N", "FILE", ...
};

class Args {
 public:
  // Parses argv[first..argc) against specs. Throws UsageError for unknown options, missing
  // values, values given to flags and stray positional arguments.
  Args(const std::vector<OptionSpec>& specs, int argc, const char* const* argv, int first);

  bool has(std::string_view name) const;
  std::string get(std::string_view name, std::string_view fallback) const;
  // Integers and sizes accept 1000, 1e6, 10k, 1M. Throw UsageError when malformed.
  std::size_t get_size(std::string_view name, std::size_t fallback) const;
  int64_t get_int(std::string_view name, int64_t fallback) const;
  double get_double(std::string_view name, double fallback) const;

 private:
  std::map<std::string, std::string, std::less<>> values_;
};

// "1,100,10000" -> {1, 100, 10000}. Throws UsageError on empty items, zero or junk.
std::vector<std::size_t> parse_size_list(std::string_view text, std::string_view what);
// "100000", "1e5", "100k", "1M" -> count. Throws UsageError.
std::size_t parse_size(std::string_view text, std::string_view what);
// Formats specs as an option list for --help, two columns.
std::string format_options(const std::vector<OptionSpec>& specs);

}  // namespace hive::gpu::tool
