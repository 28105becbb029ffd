// Conformance: every compiled GPU backend against the CPU backend on the same random data, for
// every metric x storage and several batch sizes (so each GPU search path is exercised):
// distances agree within kRelTol scaled by the magnitude of the summed terms, ids agree except
// where the distances tie within that tolerance. Skips where the GPU backend has no device.
#include "reference.hpp"

namespace conformance {
namespace {

std::vector<Param> gpu_params() {
  std::vector<Param> out;
  for (const auto& p : all_params())
    if (p.backend != "cpu") out.push_back(p);
  return out;
}

class CrossBackendTest : public IndexTest {
 protected:
  // Adds x to a fresh GPU index and a CPU index, removes every seventh id from both, then
  // compares their searches for each batch size and k.
  void expect_matches_cpu(std::size_t n, std::size_t dim, uint64_t seed, std::initializer_list<std::size_t> batches,
                          std::initializer_list<int> ks) {
    const auto x = data(n, dim, seed);
    auto gpu = make(dim);
    FlatIndex cpu(Context::open("cpu"), dim, metric(), FlatOptions{storage()});
    do_add(gpu, x);
    do_add(cpu, x);
    std::vector<int64_t> gone;
    for (int64_t id = 3; id < int64_t(n); id += 7) gone.push_back(id);
    ASSERT_EQ(gpu.remove(gone), gone.size());
    ASSERT_EQ(cpu.remove(gone), gone.size());
    for (std::size_t nq : batches) {
      for (int k : ks) {
        const auto q = data(nq, dim, seed + 100 + nq + std::size_t(k));
        const auto rg = do_search(gpu, q, k);
        const auto rc = do_search(cpu, q, k);
        ASSERT_EQ(rg.ids.size(), rc.ids.size());
        int failures = 0;
        for (std::size_t qi = 0; qi < nq && failures < 5; ++qi) {
          // Tolerance scale: the largest term magnitude a distance of this query can have.
          double scale = 1.0;
          if (!bits()) {
            double qn = 0;
            for (std::size_t j = 0; j < dim; ++j) qn += std::fabs(double(q.frow(qi)[j]));
            scale = metric() == Metric::L2 ? 2.0 * (qn + double(dim)) : qn + double(dim);
            if (metric() == Metric::Cosine) scale = 2.0;
          }
          const double tol = bits() ? 0.0 : kRelTol * scale;
          for (int j = 0; j < k && failures < 5; ++j) {
            const std::size_t s = qi * std::size_t(k) + std::size_t(j);
            const double dg = rg.distances[s], dc = rc.distances[s];
            const bool both_empty = rg.ids[s] == kNoId && rc.ids[s] == kNoId;
            if (both_empty) continue;
            if (!(std::fabs(dg - dc) <= tol)) {
              ++failures;
              ADD_FAILURE() << case_name("n=" + std::to_string(n) + " nq=" + std::to_string(nq) +
                                         " k=" + std::to_string(k))
                            << ": query " << qi << " slot " << j << ": "
                            << Context::open(GetParam().backend).info().backend << " id " << rg.ids[s] << " at "
                            << dg << ", cpu id " << rc.ids[s] << " at " << dc << " (tol " << tol << ")";
              continue;
            }
            if (rg.ids[s] != rc.ids[s]) {
              // Only a tie (within tolerance) may swap ids: the CPU's id must appear nearby on the GPU.
              bool tie = false;
              for (int jj = 0; jj < k; ++jj) {
                const std::size_t t = qi * std::size_t(k) + std::size_t(jj);
                if (rg.ids[t] == rc.ids[s] && std::fabs(double(rg.distances[t]) - dc) <= 2 * tol) tie = true;
              }
              const bool boundary =
                  j >= k - 1 || std::fabs(double(rc.distances[qi * std::size_t(k) + std::size_t(k - 1)]) - dc) <= 2 * tol;
              if (!tie && !boundary) {
                ++failures;
                ADD_FAILURE() << case_name("n=" + std::to_string(n) + " nq=" + std::to_string(nq) +
                                           " k=" + std::to_string(k))
                              << ": query " << qi << " slot " << j << ": gpu id " << rg.ids[s] << ", cpu id "
                              << rc.ids[s] << " at " << dc << " not found at a tied distance in the GPU results";
              }
            }
          }
        }
        if (HasFailure()) return;
      }
    }
  }
};

TEST_P(CrossBackendTest, MatchesCpu) {
  expect_matches_cpu(6000, dim_for(bits() ? 256 : 96), 9001, {1, 5, 64, 700}, {1, 10, 100, 1000});
}

// A store large enough for the GPU's large-batch paths (CUDA: the tensor-core screen with
// sample thresholds from 65 536 rows up), with single queries for the large-k selection.
TEST_P(CrossBackendTest, LargeStoreMatchesCpu) {
  expect_matches_cpu(70001, dim_for(bits() ? 256 : 128), 7001, {1, 64, 300}, {10, 100, 1024});
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CrossBackendTest);
INSTANTIATE_TEST_SUITE_P(Conformance, CrossBackendTest, testing::ValuesIn(gpu_params()), param_name);

}  // namespace
}  // namespace conformance
