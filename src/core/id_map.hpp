// Internal: the id bookkeeping every index kind shares: the id of each stored row (kNoId once
// deleted), the row of each live id, and the next sequential id. Checks throw before changing
// anything.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/validate.hpp"
#include "hive_gpu/error.hpp"
#include "hive_gpu/types.hpp"

namespace hive::gpu::detail {

class IdMap {
 public:
  std::size_t live() const { return id_to_row_.size(); }
  std::size_t rows() const { return row_ids_.size(); }
  int64_t next_id() const { return next_id_; }
  void set_next_id(int64_t id) { next_id_ = id; }
  int64_t id_at(std::size_t row) const { return row_ids_[row]; }
  // Whether every stored row's id is its row number (rows added with sequential ids and never
  // moved or deleted): search results then need no translation.
  bool identity() const { return misplaced_ == 0; }
  // Search results: rows -> ids in place (negative entries, empty slots, stay). Nothing to do
  // for an identity map; otherwise random reads of an 8-byte-per-row table (a 10 000 x 10 batch
  // over 1M rows took ~0.3 ms on one core), so large result sets are split over the CPU pool.
  void rows_to_ids(int64_t* out, std::size_t n) const;
  bool contains(int64_t id) const { return id_to_row_.count(id) != 0; }

  // The row of a live id, or throws UnknownId.
  std::size_t row_of(int64_t id) const {
    auto it = id_to_row_.find(id);
    if (it == id_to_row_.end()) throw Error(ErrorCode::UnknownId, "id " + std::to_string(id) + " is not in the index");
    return it->second;
  }
  // The row of a live id, or npos.
  static constexpr std::size_t npos = ~std::size_t(0);
  std::size_t find(int64_t id) const {
    auto it = id_to_row_.find(id);
    return it == id_to_row_.end() ? npos : it->second;
  }

  // Ids a caller adds: valid, unique in the call, and not present yet.
  void check_new(std::size_t n, const int64_t* ids) const {
    check_pointer(ids, n, "ids");
    check_ids(ids, n);
    for (std::size_t i = 0; i < n; ++i)
      if (id_to_row_.count(ids[i]))
        throw Error(ErrorCode::IdExists,
                    "id " + std::to_string(ids[i]) + " is already in the index (use upsert to replace it)");
  }

  std::vector<int64_t> sequential(std::size_t n) const {
    if (n > uint64_t(std::numeric_limits<int64_t>::max() - next_id_))
      throw Error(ErrorCode::InvalidArgument, "sequential ids would overflow int64");
    std::vector<int64_t> ids(n);
    for (std::size_t i = 0; i < n; ++i) ids[i] = next_id_ + int64_t(i);
    return ids;
  }

  void reserve(std::size_t n) {
    row_ids_.reserve(n);
    id_to_row_.reserve(n);
  }

  // New rows rows() .. rows() + n - 1 for ids known to be new.
  void append(std::size_t n, const int64_t* ids) {
    reserve(row_ids_.size() + n);
    for (std::size_t i = 0; i < n; ++i) {
      id_to_row_.emplace(ids[i], row_ids_.size());
      misplaced_ += ids[i] != int64_t(row_ids_.size());
      row_ids_.push_back(ids[i]);
      if (ids[i] >= next_id_) next_id_ = ids[i] == std::numeric_limits<int64_t>::max() ? ids[i] : ids[i] + 1;
    }
  }

  // Rows whose ids are given later by assign() (kNoId until then).
  void append_untracked(std::size_t n) {
    row_ids_.resize(row_ids_.size() + n, kNoId);
    misplaced_ += n;
  }
  // Gives `row` the id `id`: a live id moves there (upsert by re-insertion); returns the row it
  // left (now without an id), or npos for a new id.
  std::size_t assign(std::size_t row, int64_t id) {
    std::size_t old = npos;
    auto it = id_to_row_.find(id);
    if (it != id_to_row_.end()) {
      old = it->second;
      set_row_id(old, kNoId);
      it->second = row;
    } else {
      id_to_row_.emplace(id, row);
      if (id >= next_id_) next_id_ = id == std::numeric_limits<int64_t>::max() ? id : id + 1;
    }
    set_row_id(row, id);
    return old;
  }

  // Deletes a live id; returns its row, or npos when the id is unknown.
  std::size_t remove(int64_t id) {
    auto it = id_to_row_.find(id);
    if (it == id_to_row_.end()) return npos;
    const std::size_t row = it->second;
    set_row_id(row, kNoId);
    id_to_row_.erase(it);
    return row;
  }

  // Deletes each live id of ids[0 .. n) and calls on_row(its row); unknown ids are skipped.
  // Returns how many were deleted.
  template <class OnRow>
  std::size_t remove_all(std::size_t n, const int64_t* ids, OnRow&& on_row) {
    std::size_t removed = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t row = remove(ids[i]);
      if (row == npos) continue;
      on_row(row);
      ++removed;
    }
    return removed;
  }

  // Ids of live rows, in storage order.
  std::vector<int64_t> live_ids() const {
    std::vector<int64_t> out;
    out.reserve(id_to_row_.size());
    for (int64_t id : row_ids_)
      if (id != kNoId) out.push_back(id);
    return out;
  }
  // Rows of live ids, in storage order.
  std::vector<std::size_t> live_rows() const {
    std::vector<std::size_t> out;
    out.reserve(id_to_row_.size());
    for (std::size_t r = 0; r < row_ids_.size(); ++r)
      if (row_ids_[r] != kNoId) out.push_back(r);
    return out;
  }

  // Keeps only the live rows, renumbered in order (after the storage dropped the others).
  void compact() {
    std::vector<int64_t> kept;
    kept.reserve(id_to_row_.size());
    for (int64_t id : row_ids_)
      if (id != kNoId) kept.push_back(id);
    row_ids_ = std::move(kept);
    misplaced_ = 0;
    for (std::size_t r = 0; r < row_ids_.size(); ++r) {
      id_to_row_[row_ids_[r]] = r;
      misplaced_ += row_ids_[r] != int64_t(r);
    }
  }

  // Forgets every row; next_id is kept (ids are never reused).
  void clear() {
    row_ids_.clear();
    id_to_row_.clear();
    misplaced_ = 0;
  }

 private:
  std::vector<int64_t> row_ids_;
  std::unordered_map<int64_t, std::size_t> id_to_row_;
  int64_t next_id_ = 0;
  std::size_t misplaced_ = 0;  // rows whose id is not their row number

  void set_row_id(std::size_t row, int64_t id) {
    misplaced_ -= row_ids_[row] != int64_t(row);
    misplaced_ += id != int64_t(row);
    row_ids_[row] = id;
  }
};

}  // namespace hive::gpu::detail
