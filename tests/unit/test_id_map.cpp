// The id bookkeeping (core/id_map.hpp): identity() must say exactly whether every stored row's
// id is its row number, through any sequence of changes, since search results then skip the
// row -> id translation; rows_to_ids must translate like id_at, in every piece of a large batch.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/id_map.hpp"

namespace {

using namespace hive::gpu;

bool really_identity(const detail::IdMap& m) {
  for (std::size_t r = 0; r < m.rows(); ++r)
    if (m.id_at(r) != int64_t(r)) return false;
  return true;
}

// Results as a search writes them: rows, some of them empty (-1), translated by rows_to_ids
// and compared with id_at one by one.
void expect_translation(const detail::IdMap& m, std::size_t n, std::mt19937_64& rng) {
  if (m.rows() == 0) return;
  std::vector<int64_t> rows(n), got;
  std::uniform_int_distribution<std::size_t> pick(0, m.rows() - 1);
  for (auto& r : rows) r = rng() % 8 == 0 ? int64_t(-1) : int64_t(pick(rng));
  got = rows;
  m.rows_to_ids(got.data(), got.size());
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], rows[i] < 0 ? rows[i] : m.id_at(std::size_t(rows[i]))) << i;
}

TEST(IdMap, IdentityFollowsEveryChange) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    detail::IdMap m;
    EXPECT_TRUE(m.identity());
    for (int step = 0; step < 12; ++step) {
      const std::size_t n = rng() % 5;
      switch (rng() % 8) {
        case 0:
        case 1:
        case 2: {  // sequential ids, as add() gives them
          const auto ids = m.sequential(n);
          m.append(n, ids.data());
          break;
        }
        case 3: {  // caller's ids: sometimes the row numbers themselves
          std::vector<int64_t> ids(n);
          for (std::size_t i = 0; i < n; ++i) ids[i] = rng() % 2 ? int64_t(m.rows() + i) : m.next_id() + 1000 + int64_t(i);
          bool fresh = true;
          for (int64_t id : ids) fresh = fresh && !m.contains(id);
          if (fresh) m.append(n, ids.data());
          break;
        }
        case 4:  // a live id removed
          if (m.live() > 0) {
            const auto live = m.live_ids();
            m.remove(live[rng() % live.size()]);
          }
          break;
        case 5:  // upsert by re-insertion: a new row takes a live or new id
          if (m.rows() > 0) {
            m.append_untracked(1);
            const auto live = m.live_ids();
            const int64_t id = !live.empty() && rng() % 2 ? live[rng() % live.size()] : int64_t(m.rows() - 1);
            m.assign(m.rows() - 1, id);
          }
          break;
        case 6:
          m.compact();
          break;
        case 7:
          if (rng() % 4 == 0) m.clear();
          break;
      }
      ASSERT_EQ(m.identity(), really_identity(m)) << "trial " << trial << " step " << step;
      expect_translation(m, 64, rng);
    }
  }
}

TEST(IdMap, LargeBatchTranslatedInEveryPiece) {
  std::mt19937_64 rng(11);
  detail::IdMap m;
  std::vector<int64_t> ids(200000);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = int64_t(3 * i + 5);  // not the row numbers
  m.append(ids.size(), ids.data());
  EXPECT_FALSE(m.identity());
  expect_translation(m, 300001, rng);  // several pieces of the CPU pool, the last one partial
  detail::IdMap seq;
  const auto s = seq.sequential(100000);
  seq.append(s.size(), s.data());
  EXPECT_TRUE(seq.identity());
  expect_translation(seq, 100000, rng);
  seq.remove(5);
  seq.compact();  // rows after 5 move down: ids no longer their rows
  EXPECT_FALSE(seq.identity());
  expect_translation(seq, 100000, rng);
}

}  // namespace
