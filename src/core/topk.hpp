// Internal: bounded top-k selection and merging, shared by backends' host-side code.
// Scores are "smaller is better"; ties break on the smaller row so results do not depend
// on how the work was split across threads or tiles.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace hive::gpu::detail {

struct Candidate {
  float score;
  int64_t row;
};

inline bool better(const Candidate& a, const Candidate& b) {
  return a.score < b.score || (a.score == b.score && a.row < b.row);
}

// The k best candidates seen so far, as a max-heap on (score, row): the root is the worst
// kept one, so a new candidate costs one comparison unless it qualifies.
class TopK {
 public:
  explicit TopK(int k = 1) { reset(k); }
  void reset(int k) {
    k_ = std::size_t(k);
    heap_.clear();
    heap_.reserve(k_);
  }
  // Scores at or above this cannot enter (ties resolved by push itself).
  float threshold() const {
    return heap_.size() < k_ ? std::numeric_limits<float>::infinity() : heap_.front().score;
  }
  void push(float score, int64_t row) {
    const Candidate c{score, row};
    if (heap_.size() < k_) {
      heap_.push_back(c);
      std::push_heap(heap_.begin(), heap_.end(), better);
    } else if (better(c, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), better);
      heap_.back() = c;
      std::push_heap(heap_.begin(), heap_.end(), better);
    }
  }
  // Pushes scores[0..n) for rows first..first+n, skipping by threshold first (the hot loop).
  // NaN scores never enter (the CPU store marks removed rows NaN).
  void push_block(const float* scores, std::size_t n, int64_t first) {
    float t = threshold();
    for (std::size_t i = 0; i < n; ++i) {
      if (scores[i] <= t) {
        push(scores[i], first + int64_t(i));
        t = threshold();
      }
    }
  }
  std::vector<Candidate>& items() { return heap_; }
  const std::vector<Candidate>& items() const { return heap_; }
  // Sorted best first; the heap is consumed.
  std::vector<Candidate> take_sorted() {
    std::sort_heap(heap_.begin(), heap_.end(), better);
    return std::move(heap_);
  }

 private:
  std::size_t k_ = 1;
  std::vector<Candidate> heap_;
};

// Writes the best k of `all` (any order) as rows/scores, padding with row -1 / +inf.
inline void write_best(std::vector<Candidate>& all, int k, float* scores, int64_t* rows) {
  const std::size_t kk = std::size_t(k);
  const std::size_t m = std::min(kk, all.size());
  std::partial_sort(all.begin(), all.begin() + std::ptrdiff_t(m), all.end(), better);
  for (std::size_t j = 0; j < kk; ++j) {
    scores[j] = j < m ? all[j].score : std::numeric_limits<float>::infinity();
    rows[j] = j < m ? all[j].row : -1;
  }
}

}  // namespace hive::gpu::detail
