// Picks the kernel table for this CPU. Compiled without any SIMD flags: it must run anywhere,
// and it is the only code that decides whether an AVX2/AVX-512 translation unit may be entered.
#include <cstdlib>
#include <string>

#include "backends/cpu/kernels.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::cpu {
namespace {

#if defined(__x86_64__) || defined(__i386__)
// __builtin_cpu_supports also checks that the OS saves the YMM/ZMM state (XCR0).
bool detect(SimdLevel level) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c") && __builtin_cpu_supports("popcnt");
  if (level == SimdLevel::AVX2) return avx2;
  return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}
#else
bool detect(SimdLevel) { return false; }
#endif

SimdLevel detect_best() {
  if (cpu_supports(SimdLevel::AVX512)) return SimdLevel::AVX512;
  if (cpu_supports(SimdLevel::AVX2)) return SimdLevel::AVX2;
  return SimdLevel::Scalar;
}

bool equals_ignore_case(const char* a, const char* b) {
  for (; *a != '\0' && *b != '\0'; ++a, ++b) {
    const char ca = (*a >= 'A' && *a <= 'Z') ? static_cast<char>(*a - 'A' + 'a') : *a;
    if (ca != *b) return false;
  }
  return *a == *b;
}

}  // namespace

const char* to_string(SimdLevel level) noexcept {
  switch (level) {
    case SimdLevel::Scalar:
      return "scalar";
    case SimdLevel::AVX2:
      return "avx2";
    case SimdLevel::AVX512:
      return "avx512";
  }
  return "unknown";
}

bool cpu_supports(SimdLevel level) {
  static const bool avx2 = detect(SimdLevel::AVX2);
  static const bool avx512 = detect(SimdLevel::AVX512);
  switch (level) {
    case SimdLevel::Scalar:
      return true;
    case SimdLevel::AVX2:
      return avx2;
    case SimdLevel::AVX512:
      return avx512;
  }
  return false;
}

SimdLevel resolve_simd_level(SimdLevel best, const char* request) noexcept {
  if (request == nullptr) return best;
  for (const SimdLevel l : {SimdLevel::Scalar, SimdLevel::AVX2, SimdLevel::AVX512}) {
    // Only a step down is honoured: asking for a level the CPU lacks must not crash it.
    if (equals_ignore_case(request, to_string(l))) return l <= best ? l : best;
  }
  return best;
}

SimdLevel best_simd_level() {
  static const SimdLevel level = resolve_simd_level(detect_best(), std::getenv("HIVE_GPU_SIMD"));
  return level;
}

const KernelTable& kernels(SimdLevel level) {
  if (!cpu_supports(level)) {
    throw Error(ErrorCode::Unsupported,
                std::string("this CPU does not support the ") + to_string(level) + " kernels");
  }
  switch (level) {
    case SimdLevel::Scalar:
      return scalar_kernels();
    case SimdLevel::AVX2:
      return avx2_kernels();
    case SimdLevel::AVX512:
      return avx512_kernels();
  }
  throw Error(ErrorCode::Internal, "unknown SIMD level");
}

}  // namespace hive::gpu::cpu
