// Shared by the compute shaders: metric and storage codes, decoding of stored rows, the
// per-element step of each metric and its final key. Keys are "smaller is nearer":
// L2 squared distance, inner product -dot, cosine 1 - dot, L1, Linf, Hamming bit count.
#ifndef HIVE_COMMON_GLSL
#define HIVE_COMMON_GLSL

#define M_L2 0
#define M_IP 1
#define M_COS 2
#define M_L1 3
#define M_LINF 4
#define M_HAMMING 5

#define S_F32 0
#define S_F16 1
#define S_BF16 2
#define S_BITS 3

#define INF uintBitsToFloat(0x7f800000u)
const uint NONE = 0xffffffffu;

// 16 stored bytes -> up to 8 floats (F32: 4, F16 / BF16: 8). Bits are not decoded.
void decode8(int storage, uvec4 w, out vec4 lo, out vec4 hi) {
  if (storage == S_F32) {
    lo = uintBitsToFloat(w);
    hi = vec4(0.0);
  } else if (storage == S_F16) {
    lo = vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y));
    hi = vec4(unpackHalf2x16(w.z), unpackHalf2x16(w.w));
  } else {  // BF16: the high 16 bits of an fp32
    lo = uintBitsToFloat(uvec4(w.x << 16, w.x & 0xffff0000u, w.y << 16, w.y & 0xffff0000u));
    hi = uintBitsToFloat(uvec4(w.z << 16, w.z & 0xffff0000u, w.w << 16, w.w & 0xffff0000u));
  }
}

// acc <- acc (op) f(q, x), four lanes at once.
vec4 metric_step(int metric, vec4 acc, vec4 q, vec4 x) {
  if (metric == M_L2) {
    vec4 d = q - x;
    return fma(d, d, acc);
  } else if (metric == M_IP || metric == M_COS) {
    return fma(q, x, acc);
  } else if (metric == M_L1) {
    return acc + abs(q - x);
  } else {
    return max(acc, abs(q - x));
  }
}

float metric_finish(int metric, vec4 acc) {
  if (metric == M_LINF) return max(max(acc.x, acc.y), max(acc.z, acc.w));
  float s = (acc.x + acc.y) + (acc.z + acc.w);
  if (metric == M_IP) return -s;
  if (metric == M_COS) return 1.0 - s;
  return s;
}

#endif
