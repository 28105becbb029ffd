#version 450
// The end of a screened single query (see VulkanFlatStore::screen_params): the W = 32 best rows
// of query y by the fp16 copy's keys (in_keys / in_rows, any order) are re-scored from the fp32
// rows, and their k best are the exact answer when no row outside them can beat the k-th: every
// outside row's copy key is at least the largest of the 32, s, and its exact key then at least
//   inner product: s - bound_e (cosine: 1 + s - bound_e, s being -dot);
//   L2: (1 - g) max(0, sqrt(s / (1 + g)) - bound_e)^2, g = bound_g, s in true units (key * score_scale).
// Then out holds the k best (key, row) in order (out_keys[y * out_ld + i], out_rows[rows_off +
// y * out_ld + i]: the host's readback buffer, so no copy follows); otherwise
// out_rows[rows_off + y * out_ld] = UNSURE and the host scans the fp32 rows. Workgroup y: 8
// invocations per candidate, each a share of its pieces.
//
// Built twice. Plain: the 32 candidates are in_keys / in_rows[y * in_ld + i]. With LISTS (devices
// whose subgroups have 32 invocations): `lists` sorted lists of 32 pairs at in[y * in_ld + in_off
// + l * 32 ...] are first merged here by subgroup shuffles (list_merge.glsl) into the 32 best:
// the last merge level in this dispatch, not one of its own (~4.5 us of barrier and launch on an
// H100).
#extension GL_GOOGLE_include_directive : require
#ifdef LISTS
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#define SG 32u
#endif

layout(local_size_x = 256) in;
#define WG 256u
#define W 32u
#define PARTS 8u
layout(constant_id = 0) const int METRIC = 0;     // the exact metric: L2, IP or COS
layout(constant_id = 1) const uint ROW_V4 = 32;   // 16-byte pieces of an fp32 row

#include "common.glsl"

const uint UNSURE = 0xfffffffeu;

layout(std430, binding = 0) readonly buffer Rows { uvec4 rows[]; };
layout(std430, binding = 1) readonly buffer Queries { uvec4 queries[]; };
layout(std430, binding = 2) readonly buffer InKeys { float in_keys[]; };
layout(std430, binding = 3) readonly buffer InRows { uint in_rows[]; };
layout(std430, binding = 4) writeonly buffer OutKeys { float out_keys[]; };
layout(std430, binding = 5) writeonly buffer OutRows { uint out_rows[]; };

layout(push_constant) uniform Push {
  uint in_ld;
  uint out_ld;
  uint k;
  uint q_first;      // the fp32 query of workgroup 0
  float score_scale;
  float bound_g;
  float bound_e;
  uint rows_off;     // out_rows entries before the first query's (out_keys and out_rows may be one buffer)
  uint lists;        // LISTS: the lists to merge, and where the first starts
  uint in_off;
} p;

#ifdef LISTS
#include "list_merge.glsl"
shared float m_key[W];  // the merged 32 candidates
shared uint m_row[W];
#define CAND_ROW(i) m_row[i]
#define CAND_KEY(i) m_key[i]
#else
#define CAND_ROW(i) in_rows[y * p.in_ld + (i)]
#define CAND_KEY(i) in_keys[y * p.in_ld + (i)]
#endif

shared uvec4 sq[ROW_V4];
shared float part[WG];
shared float ekey[W];
shared uint erow[W];
shared float skey[W];  // the exact keys in order
shared uint srow[W];
shared float ckey[W];  // the copy's keys
shared bool cfull[W];
shared float s_worst;
shared bool s_full, s_sure;

void main() {
  uint tid = gl_LocalInvocationIndex, y = gl_WorkGroupID.y;
  uint j = tid / PARTS, g = tid % PARTS;
  for (uint c = tid; c < ROW_V4; c += WG) sq[c] = queries[(p.q_first + y) * ROW_V4 + c];
#ifdef LISTS
  {
    uint lane = gl_SubgroupInvocationID, sg = gl_SubgroupID;
    uint base = y * p.in_ld + p.in_off;
    float ak = INF;
    uint ar = NONE;
    for (uint l = sg; l < p.lists; l += WG / SG)  // uniform within each subgroup
      merge_into(ak, ar, in_keys[base + l * W + lane], in_rows[base + l * W + lane], lane);
    join_subgroups(ak, ar, lane, sg);  // (its barriers also publish sq)
    if (sg == 0u) {
      m_key[lane] = ak;
      m_row[lane] = ar;
    }
    barrier();
  }
  uint row = CAND_ROW(j);
#else
  uint row = CAND_ROW(j);  // (loaded before the query's barrier: their latencies overlap)
  barrier();
#endif
  vec4 acc = vec4(0.0);
  if (row != NONE)
    for (uint c = g; c < ROW_V4; c += PARTS)
      acc = metric_step(METRIC, acc, uintBitsToFloat(sq[c]), uintBitsToFloat(rows[row * ROW_V4 + c]));
  part[tid] = (acc.x + acc.y) + (acc.z + acc.w);
  barrier();
  if (tid < W) {
    uint r = CAND_ROW(tid);
    float s = 0.0;
    for (uint i = 0u; i < PARTS; ++i) s += part[tid * PARTS + i];
    float key = METRIC == M_IP ? -s : METRIC == M_COS ? 1.0 - s : s;
    bool ok = r != NONE && !isnan(key);
    ekey[tid] = ok ? key : INF;
    erow[tid] = ok ? r : NONE;
    // The copy's key, for the largest among the candidates (empty slots: -INF).
    ckey[tid] = r == NONE ? -INF : CAND_KEY(tid);
    cfull[tid] = r != NONE;
  }
  barrier();
  // Each candidate's place among the exact keys, by counting those before it (key, then row,
  // then slot: empty slots are all (INF, NONE)), in parallel: the single-invocation insertion
  // sort and scans this replaced took ~10 us of a single query on an H100.
  if (tid < W) {
    float kk = ekey[tid];
    uint rr = erow[tid], rank = 0u;
    for (uint i = 0u; i < W; ++i)
      if (ekey[i] < kk || (ekey[i] == kk && (erow[i] < rr || (erow[i] == rr && i < tid)))) ++rank;
    skey[rank] = kk;
    srow[rank] = rr;
  }
  if (tid == 0u) {
    // The largest copy key among the candidates, and whether all 32 slots hold a row (fewer:
    // every live row was a candidate).
    float worst = -INF;
    bool full = true;
    for (uint i = 0u; i < W; ++i) {
      full = full && cfull[i];
      worst = max(worst, ckey[i]);
    }
    s_worst = worst;
    s_full = full;
  }
  barrier();
  if (tid == 0u) {
    bool sure = !s_full;
    float kth = skey[p.k - 1u];
    if (!sure && srow[p.k - 1u] != NONE) {
      float s = s_worst * p.score_scale;
      float lower;
      if (METRIC == M_L2) {
        float r = sqrt(max(s, 0.0) / (1.0 + p.bound_g)) * (1.0 - 1e-6) - p.bound_e;
        lower = r > 0.0 ? (1.0 - p.bound_g) * r * r * (1.0 - 1e-6) : 0.0;
      } else {
        lower = s - p.bound_e + (METRIC == M_COS ? 1.0 : 0.0);
        lower -= abs(lower) * 1e-6 + abs(s) * 1e-6;  // the float arithmetic of this line
      }
      sure = lower > kth;
    }
    s_sure = sure;
  }
  barrier();
  uint o = y * p.out_ld;
  if (s_sure) {
    if (tid < p.k) {
      out_keys[o + tid] = skey[tid];
      out_rows[p.rows_off + o + tid] = srow[tid];
    }
  } else if (tid == 0u) {
    out_rows[p.rows_off + o] = UNSURE;
  }
}
