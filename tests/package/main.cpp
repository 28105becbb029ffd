// Links against the installed library and runs one exact search; exits non-zero on a wrong answer.
#include <hive_gpu/hive_gpu.hpp>

#include <cstdio>
#include <vector>

int main() {
  namespace hg = hive::gpu;
  hg::FlatIndex index(hg::Context::open("cpu"), 2, hg::Metric::L2);
  const std::vector<float> x = {0, 0, 1, 0, 5, 5};
  index.add(3, x.data());
  const float q[2] = {0.9f, 0.1f};
  const auto r = index.search(1, q, 2);
  const bool ok = r.id(0, 0) == 1 && r.id(0, 1) == 0;
  std::printf("consumer: nearest %lld then %lld: %s\n", static_cast<long long>(r.id(0, 0)),
              static_cast<long long>(r.id(0, 1)), ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
