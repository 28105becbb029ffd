#include "args.hpp"

#include <charconv>
#include <cmath>
#include <sstream>

namespace hive::gpu::tool {

namespace {
const OptionSpec* find_spec(const std::vector<OptionSpec>& specs, std::string_view name) {
  for (const auto& s : specs) {
    if (s.name == name) return &s;
  }
  return nullptr;
}
}  // namespace

Args::Args(const std::vector<OptionSpec>& specs, int argc, const char* const* argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string_view tok = argv[i];
    if (tok.size() < 3 || tok.substr(0, 2) != "--") {
      throw UsageError("unexpected argument '" + std::string(tok) + "'");
    }
    tok.remove_prefix(2);
    std::string name(tok);
    std::string value;
    bool inline_value = false;
    if (auto eq = tok.find('='); eq != std::string_view::npos) {
      name = std::string(tok.substr(0, eq));
      value = std::string(tok.substr(eq + 1));
      inline_value = true;
    }
    const OptionSpec* spec = find_spec(specs, name);
    if (spec == nullptr) throw UsageError("unknown option '--" + name + "'");
    if (spec->takes_value) {
      if (!inline_value) {
        if (i + 1 >= argc) throw UsageError("option '--" + name + "' needs a value");
        value = argv[++i];
      }
    } else if (inline_value) {
      throw UsageError("option '--" + name + "' takes no value");
    }
    values_[name] = value;
  }
}

bool Args::has(std::string_view name) const { return values_.find(name) != values_.end(); }

std::string Args::get(std::string_view name, std::string_view fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::string(fallback) : it->second;
}

std::size_t Args::get_size(std::string_view name, std::size_t fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  return parse_size(it->second, "--" + std::string(name));
}

int64_t Args::get_int(std::string_view name, int64_t fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  const std::string& s = it->second;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) {
    throw UsageError("--" + std::string(name) + ": '" + s + "' is not an integer");
  }
  return v;
}

double Args::get_double(std::string_view name, double fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  const std::string& s = it->second;
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v)) {
    throw UsageError("--" + std::string(name) + ": '" + s + "' is not a number");
  }
  return v;
}

std::size_t parse_size(std::string_view text, std::string_view what) {
  std::string_view t = text;
  double mult = 1;
  if (!t.empty()) {
    switch (t.back()) {
      case 'k': case 'K': mult = 1e3; t.remove_suffix(1); break;
      case 'm': case 'M': mult = 1e6; t.remove_suffix(1); break;
      case 'g': case 'G': mult = 1e9; t.remove_suffix(1); break;
      default: break;
    }
  }
  double v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc() || p != t.data() + t.size() || !std::isfinite(v) || v < 0) {
    throw UsageError(std::string(what) + ": '" + std::string(text) + "' is not a count");
  }
  v *= mult;
  if (v != std::floor(v) || v > 1e15) {
    throw UsageError(std::string(what) + ": '" + std::string(text) + "' is not a whole count");
  }
  return static_cast<std::size_t>(v);
}

std::vector<std::size_t> parse_size_list(std::string_view text, std::string_view what) {
  std::vector<std::size_t> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(pos, comma - pos);
    if (item.empty()) throw UsageError(std::string(what) + ": empty item in '" + std::string(text) + "'");
    std::size_t v = parse_size(item, what);
    if (v == 0) throw UsageError(std::string(what) + ": values must be positive");
    out.push_back(v);
    pos = comma + 1;
  }
  return out;
}

std::string format_options(const std::vector<OptionSpec>& specs) {
  std::size_t width = 0;
  std::vector<std::string> lefts;
  for (const auto& s : specs) {
    std::string left = "  --" + s.name;
    if (s.takes_value) left += " " + (s.value_hint.empty() ? std::string("VALUE") : s.value_hint);
    width = std::max(width, left.size());
    lefts.push_back(std::move(left));
  }
  std::ostringstream os;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    os << lefts[i] << std::string(width + 2 - lefts[i].size(), ' ') << specs[i].help << '\n';
  }
  return os.str();
}

}  // namespace hive::gpu::tool
