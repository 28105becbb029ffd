#include "progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace hive::gpu::tool {

std::string short_count(double v) {
  const char* suffix = "";
  if (v >= 1e9) {
    v /= 1e9;
    suffix = "G";
  } else if (v >= 1e6) {
    v /= 1e6;
    suffix = "M";
  } else if (v >= 1e3) {
    v /= 1e3;
    suffix = "k";
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, v >= 100 ? "%.0f%s" : "%.1f%s", v, suffix);
  return buf;
}

bool Progress::stderr_is_tty() {
  if (isatty(STDERR_FILENO) == 0) return false;
  const char* term = std::getenv("TERM");
  return term == nullptr || std::strcmp(term, "dumb") != 0;
}

Progress::Progress(std::string label, uint64_t total, std::string unit, bool enabled)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      active_(enabled && stderr_is_tty()),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {
  if (active_) draw(false);
}

Progress::~Progress() { finish(); }

void Progress::update(uint64_t done) {
  done_ = std::min(done, total_);
  if (!active_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw(false);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (!active_) return;
  draw(true);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

void Progress::draw(bool final_draw) {
  constexpr int kWidth = 30;
  const double frac = total_ == 0 ? 1.0 : static_cast<double>(done_) / static_cast<double>(total_);
  const int filled = std::clamp(static_cast<int>(frac * kWidth), 0, kWidth);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? static_cast<double>(done_) / secs : 0.0;
  char tail[96];
  if (final_draw || rate <= 0) {
    std::snprintf(tail, sizeof tail, "%s %s/s, %.1f s", unit_.c_str(), short_count(rate).c_str(), secs);
  } else {
    const double left = static_cast<double>(total_ - done_) / rate;
    std::snprintf(tail, sizeof tail, "%s %s/s, %.0f s left", unit_.c_str(), short_count(rate).c_str(), left);
  }
  std::fprintf(stderr, "\r%s [%s%s] %llu/%llu %s\x1b[K", label_.c_str(), std::string(std::size_t(filled), '#').c_str(),
               std::string(std::size_t(kWidth - filled), ' ').c_str(), static_cast<unsigned long long>(done_),
               static_cast<unsigned long long>(total_), tail);
  std::fflush(stderr);
}

}  // namespace hive::gpu::tool
