// Input checks (core/validate.hpp): the non-finite scan splits large inputs over the CPU pool;
// every piece must still be checked and the first bad value named exactly.
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "core/validate.hpp"
#include "hive_gpu/error.hpp"

namespace {

using namespace hive::gpu;

TEST(Validate, NonFiniteFoundInEveryPieceOfALargeInput) {
  const std::size_t dim = 100, n = 50000;  // 5M floats: several pieces
  std::vector<float> x(n * dim, 1.5f);
  EXPECT_NO_THROW(detail::check_finite(x.data(), n, dim, "vectors"));
  for (std::size_t at : {std::size_t(0), std::size_t(1) << 20, x.size() / 2 + 7, x.size() - 1}) {
    SCOPED_TRACE(at);
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
      x[at] = bad;
      try {
        detail::check_finite(x.data(), n, dim, "vectors");
        ADD_FAILURE() << "not found";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::NonFiniteValue);
        const std::string want = "row " + std::to_string(at / dim) + ", column " + std::to_string(at % dim);
        EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
      }
      x[at] = 1.5f;
    }
  }
}

}  // namespace
