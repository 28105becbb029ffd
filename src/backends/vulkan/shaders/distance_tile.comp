#version 450
// The key of every (query, row) pair of a tile: D[(q - q0) * ld + (r - r0)] for queries
// [q0, q0 + nq) and chunk rows [r0, r0 + nr). A workgroup computes 64 queries x 64 rows, each
// invocation 4 x 4, stepping through the dimensions 32 at a time in shared memory (a plain
// shared-memory tiled product; every metric takes the same shape). Deleted rows get the bit
// pattern 0xffffffff (a NaN no arithmetic on finite inputs produces).
#extension GL_GOOGLE_include_directive : require

layout(local_size_x = 16, local_size_y = 16) in;
layout(constant_id = 0) const int METRIC = 0;
layout(constant_id = 1) const int STORAGE = 0;
layout(constant_id = 2) const uint ROW_V4 = 32;

#include "common.glsl"

const bool HALF = STORAGE == S_F16 || STORAGE == S_BF16;
const uint Q_V4 = HALF ? 2u * ROW_V4 : ROW_V4;
const uint STEP_ROW_V4 = HALF ? 4u : 8u;  // 16-byte row pieces per 32-element step
const uint STEPS = (ROW_V4 + STEP_ROW_V4 - 1u) / STEP_ROW_V4;
const uint PITCH = 17u;  // vec4s per shared line: 16 (64 values) + one of padding

layout(std430, binding = 0) readonly buffer Rows { uvec4 rows[]; };
layout(std430, binding = 1) readonly buffer Queries { uvec4 queries[]; };
layout(std430, binding = 2) readonly buffer Deleted { uint deleted[]; };
layout(std430, binding = 3) writeonly buffer Dist { float dist[]; };

layout(push_constant) uniform Push {
  uint n;
  uint r0;
  uint nr;
  uint q0;
  uint nq;
  uint ld;
} p;

// [element of the step][64 values] as vec4 lines (bit patterns: floats, or bit words for
// Hamming). Each vec4 holds one element of four consecutive rows (queries) and is written
// whole by one invocation, which loads those four rows' piece.
shared uvec4 qs[32 * PITCH];
shared uvec4 rs[32 * PITCH];

void main() {
  uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  uint tid = ty * 16u + tx;
  uint rt = p.r0 + gl_WorkGroupID.x * 64u;   // first row of the tile (chunk-local)
  uint qt = p.q0 + gl_WorkGroupID.y * 64u;   // first query of the tile
  uint rend = min(p.r0 + p.nr, p.n);
  uint qend = p.q0 + p.nq;

  // acc[i]: query ty*4+i against rows tx*4 .. tx*4+3, one per lane (hacc for Hamming).
  vec4 acc0 = vec4(0.0), acc1 = vec4(0.0), acc2 = vec4(0.0), acc3 = vec4(0.0);
  uvec4 h0 = uvec4(0u), h1 = uvec4(0u), h2 = uvec4(0u), h3 = uvec4(0u);

  for (uint s = 0u; s < STEPS; ++s) {
    barrier();  // the previous step's reads are done
    // Rows: 16 quads x STEP_ROW_V4 pieces; consecutive invocations take consecutive pieces.
    for (uint idx = tid; idx < 16u * STEP_ROW_V4; idx += 256u) {
      uint j = idx / STEP_ROW_V4, c = idx % STEP_ROW_V4;
      uint piece = s * STEP_ROW_V4 + c;
      uvec4 w[4];
      for (uint u = 0u; u < 4u; ++u) {
        uint r = rt + 4u * j + u;
        w[u] = (r < rend && piece < ROW_V4) ? rows[r * ROW_V4 + piece] : uvec4(0u);
      }
      if (HALF) {
        vec4 lo[4], hi[4];
        for (uint u = 0u; u < 4u; ++u) decode8(STORAGE, w[u], lo[u], hi[u]);
        for (uint e = 0u; e < 4u; ++e) {
          rs[(c * 8u + e) * PITCH + j] = floatBitsToUint(vec4(lo[0][e], lo[1][e], lo[2][e], lo[3][e]));
          rs[(c * 8u + 4u + e) * PITCH + j] = floatBitsToUint(vec4(hi[0][e], hi[1][e], hi[2][e], hi[3][e]));
        }
      } else {
        for (uint e = 0u; e < 4u; ++e) rs[(c * 4u + e) * PITCH + j] = uvec4(w[0][e], w[1][e], w[2][e], w[3][e]);
      }
    }
    // Queries: 16 quads x 8 pieces (32 fp32 elements, or 32 bit words for Hamming).
    for (uint idx = tid; idx < 128u; idx += 256u) {
      uint j = idx / 8u, c = idx % 8u;
      uint piece = s * 8u + c;
      uvec4 w[4];
      for (uint u = 0u; u < 4u; ++u) {
        uint q = qt + 4u * j + u;
        w[u] = (q < qend && piece < Q_V4) ? queries[q * Q_V4 + piece] : uvec4(0u);
      }
      for (uint e = 0u; e < 4u; ++e) qs[(c * 4u + e) * PITCH + j] = uvec4(w[0][e], w[1][e], w[2][e], w[3][e]);
    }
    barrier();
    for (uint e = 0u; e < 32u; ++e) {
      uvec4 a = qs[e * PITCH + ty], b = rs[e * PITCH + tx];
      if (METRIC == M_HAMMING) {
        h0 += uvec4(bitCount(uvec4(a.x) ^ b));
        h1 += uvec4(bitCount(uvec4(a.y) ^ b));
        h2 += uvec4(bitCount(uvec4(a.z) ^ b));
        h3 += uvec4(bitCount(uvec4(a.w) ^ b));
      } else {
        vec4 fa = uintBitsToFloat(a), fb = uintBitsToFloat(b);
        acc0 = metric_step(METRIC, acc0, vec4(fa.x), fb);
        acc1 = metric_step(METRIC, acc1, vec4(fa.y), fb);
        acc2 = metric_step(METRIC, acc2, vec4(fa.z), fb);
        acc3 = metric_step(METRIC, acc3, vec4(fa.w), fb);
      }
    }
  }
  vec4 res[4];
  if (METRIC == M_HAMMING) {
    res[0] = vec4(h0); res[1] = vec4(h1); res[2] = vec4(h2); res[3] = vec4(h3);
  } else if (METRIC == M_IP) {
    res[0] = -acc0; res[1] = -acc1; res[2] = -acc2; res[3] = -acc3;
  } else if (METRIC == M_COS) {
    res[0] = 1.0 - acc0; res[1] = 1.0 - acc1; res[2] = 1.0 - acc2; res[3] = 1.0 - acc3;
  } else {
    res[0] = acc0; res[1] = acc1; res[2] = acc2; res[3] = acc3;
  }
  uint r4 = rt + tx * 4u;
  bvec4 del = bvec4(false);
  for (uint j = 0u; j < 4u; ++j)
    del[j] = r4 + j < rend && (deleted[(r4 + j) >> 5] & (1u << ((r4 + j) & 31u))) != 0u;
  for (uint i = 0u; i < 4u; ++i) {
    uint q = qt + ty * 4u + i;
    if (q >= qend) continue;
    for (uint j = 0u; j < 4u; ++j) {
      uint r = r4 + j;
      if (r >= rend) continue;
      dist[(q - p.q0) * p.ld + (r - p.r0)] = del[j] ? uintBitsToFloat(0xffffffffu) : res[i][j];
    }
  }
}
