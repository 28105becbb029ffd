// hive-gpu command: a one-line progress bar on stderr (rows done, rate, time left).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace hive::gpu::tool {

class Progress {
 public:
  // Draws only when enabled and stderr is a terminal. unit: "rows", "queries", ...
  Progress(std::string label, uint64_t total, std::string unit, bool enabled);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Sets the count done so far; redraws at most ten times a second.
  void update(uint64_t done);
  // Draws the final state and ends the line (idempotent).
  void finish();
  bool active() const { return active_; }

  // True when stderr is a terminal (and TERM is not "dumb").
  static bool stderr_is_tty();

 private:
  void draw(bool final_draw);
  std::string label_;
  std::string unit_;
  uint64_t total_;
  uint64_t done_ = 0;
  bool active_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// "1.23k", "45.6M": short human counts for rates.
std::string short_count(double v);

}  // namespace hive::gpu::tool
