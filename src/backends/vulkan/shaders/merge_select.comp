#version 450
// Top-k of a segment of candidates: workgroup (x, y) takes entries
// [x * seg_len, (x + 1) * seg_len) of query y's m entries and writes its k best to
// out[y * out_ld + out_off + x * k ...]. MODE 0 reads (key, row) pairs; MODE 1 reads a row of
// the distance matrix (distance_tile.comp), entry i being row row_base + i, the bits
// 0xffffffff marking a deleted row.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

layout(local_size_x = 256) in;
#define WG 256u
layout(constant_id = 0) const int MODE = 0;
layout(constant_id = 1) const uint KP = 16;
layout(constant_id = 2) const uint BS = 256;
layout(constant_id = 3) const uint E = 1;  // entries per invocation and round
// KL > 0 (small k): each invocation first keeps its own KL best (KL >= k, a power of two) in
// registers, a fully unrolled insertion, so most entries cost one comparison and no barrier;
// then the workgroup merges those lists through the shared-memory select.
layout(constant_id = 4) const uint KL = 0;

#include "common.glsl"
#include "select.glsl"

layout(std430, binding = 0) readonly buffer InKeys { float in_keys[]; };
layout(std430, binding = 1) readonly buffer InRows { uint in_rows[]; };
layout(std430, binding = 2) writeonly buffer OutKeys { float out_keys[]; };
layout(std430, binding = 3) writeonly buffer OutRows { uint out_rows[]; };

layout(push_constant) uniform Push {
  uint m;         // entries per query
  uint in_ld;
  uint in_off;
  uint seg_len;
  uint k;
  uint out_ld;
  uint out_off;
  uint row_base;  // MODE 1
} p;

void main() {
  uint tid = gl_LocalInvocationIndex;
  uint q = gl_WorkGroupID.y;
  sel_init();
  uint first = gl_WorkGroupID.x * p.seg_len;
  uint last = min(p.m, first + p.seg_len);
  uint in0 = q * p.in_ld + p.in_off;
  if (KL > 0u) {
    float pk[KL > 0u ? KL : 1u];
    uint pr[KL > 0u ? KL : 1u];
    [[unroll]] for (uint j = 0u; j < KL; ++j) {
      pk[j] = INF;
      pr[j] = NONE;
    }
    for (uint i = first + tid; i < last; i += WG) {
      float key = in_keys[in0 + i];
      uint row = MODE == 0 ? in_rows[in0 + i] : p.row_base + i;
      bool ok = row != NONE && floatBitsToUint(key) != 0xffffffffu;
      if (ok && pair_less(key, row, pk[KL - 1u], pr[KL - 1u])) {
        pk[KL - 1u] = key;
        pr[KL - 1u] = row;
        [[unroll]] for (uint j = KL - 1u; j > 0u; --j) {
          if (pair_less(pk[j], pr[j], pk[j - 1u], pr[j - 1u])) {
            float tk = pk[j]; pk[j] = pk[j - 1u]; pk[j - 1u] = tk;
            uint tr = pr[j]; pr[j] = pr[j - 1u]; pr[j - 1u] = tr;
          }
        }
      }
    }
    // Only each list's first k can be among the workgroup's k best.
    [[unroll]] for (uint j0 = 0u; j0 < KL; j0 += E) {
      [[unroll]] for (uint e = 0u; e < E; ++e) {
        uint j = j0 + e;
        if (j < KL) sel_offer(j < p.k && pr[j] != NONE, pk[j], pr[j]);
      }
      sel_round_end(p.k);
    }
  } else {
    for (uint i0 = first; i0 < last; i0 += E * WG) {
      for (uint e = 0u; e < E; ++e) {
        uint i = i0 + e * WG + tid;
        bool ok = i < last;
        float key = ok ? in_keys[in0 + i] : 0.0;
        uint row = MODE == 0 ? (ok ? in_rows[in0 + i] : NONE) : p.row_base + i;
        // An empty slot (row NONE) or a deleted row is never offered.
        ok = ok && row != NONE && floatBitsToUint(key) != 0xffffffffu;
        sel_offer(ok, key, row);
      }
      sel_round_end(p.k);
    }
  }
  sel_finish(p.k);
  uint o = q * p.out_ld + p.out_off + gl_WorkGroupID.x * p.k;
  for (uint i = tid; i < p.k; i += WG) {
    out_keys[o + i] = l_key[i];
    out_rows[o + i] = l_row[i];
  }
}
