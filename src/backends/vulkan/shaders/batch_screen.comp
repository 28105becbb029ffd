#version 450
// The screen of a query batch (L2, inner product, cosine on an fp32 store's fp16 copy): every
// query x row dot product of the copy and the queries rounded to fp16, and only rows whose
// screened score, less an error bound, reaches the query's threshold become candidates; the
// scores never reach memory. The host proves the bound (VulkanFlatStore::batch_screen_terms) and
// re-scores the candidates exactly (rescore.comp).
//
// A workgroup takes 128 queries (4 groups of 32) and a range of rows. With COOP
// (VK_NV_cooperative_matrix, 32-wide subgroups) each subgroup multiplies its 32 queries, held in
// registers, by 32 rows at a time on the tensor cores (16 x 8 x 16 fp16 products, fp32 sums).
// The rows reach shared memory through registers, two steps ahead, in coalesced 16-byte loads
// (every subgroup reads them; straight from the buffer each subgroup waited on its own loads),
// double-buffered so that one workgroup barrier a step suffices; the 32 x 32 scores go through
// shared memory too (the fragments' layout is the driver's), where lane l of a subgroup tests
// rows 4 (l % 8) .. + 3 of queries l / 8, l / 8 + 4, ... (one 16-byte load of scores a query).
// Without COOP each group of 32 invocations computes the products with fp32 FMAs, 64 rows a step,
// invocation l testing rows l and l + 32 as it scores them. The test:
//   emit (query q, row r) iff  acc * W_q >= fma(|r|, P_q, |r|^2 rc) + Q_q
// with acc the scaled product (queries times s_q, rows times the copy's scale), W_q = 2 or 1
// over both scales (a power of two: exact), P_q = -a |q|, and Q_q the query's remaining terms
// less its threshold tau'_q = tau + |tau| rel + A_q, tau the k-th best exact score of a sample
// of rows (the tiled search's keys, at t_off in each query's line). Emitting: the row's deleted
// bit is read, then pos = atomicAdd(count[q], 1) and row r goes to cand[nq + q cap + pos] while
// pos < cap; counts keep counting past cap (the host then takes another path).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#ifdef COOP
#extension GL_NV_cooperative_matrix : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#endif

layout(local_size_x = 128) in;
layout(constant_id = 0) const int METRIC = 0;
layout(constant_id = 1) const uint KB = 8;  // dim / 16 (at most 8: a subgroup's queries stay in registers)

#include "common.glsl"

const uint QV4 = 4u * KB;  // 16-byte pieces of an fp32 query
const uint CV4 = 2u * KB;  // 16-byte pieces of a copy row (8 halves each)
const uint QW = 128u;      // queries a workgroup
#ifdef COOP
const uint TILE = 32u;     // rows a step
const uint BP = CV4 + 1u;  // 16-byte pieces a row takes in shared memory (one of padding: no bank conflicts)
const uint SC = 40u;       // floats a score line (32 + 8: stores of 8-wide columns spread over the banks)
const uint B_AT = 0u;                  // two row buffers, TILE x BP pieces each
const uint SC_AT = 2u * TILE * BP;     // then the scores, QW x SC floats
const uint PRE = 4u;                   // pieces an invocation stages a step: TILE CV4 / 128 <= 4
#else
const uint TILE = 64u;
#endif

layout(std430, binding = 0) readonly buffer Copy { uvec4 copy[]; };
// The fp32 queries (QV4 pieces each), then two vec4 of terms per query at info_off:
// (W, P, Qb, A) and (s_q, 0, 0, 0).
layout(std430, binding = 1) readonly buffer Queries { uvec4 queries[]; };
layout(std430, binding = 2) readonly buffer Thresholds { float tkeys[]; };
layout(std430, binding = 3) readonly buffer Norms { float norms[]; };
layout(std430, binding = 4) readonly buffer Deleted { uint deleted[]; };
layout(std430, binding = 5) buffer Cand { uint cand[]; };  // nq counts, then nq x cap rows

layout(push_constant) uniform Push {
  uint n;            // rows
  uint rows_per_wg;  // a multiple of TILE
  uint nq;
  uint cap;
  uint t_ld;         // threshold keys: tkeys[q * t_ld + t_off]
  uint t_off;
  uint info_off;     // in 16-byte pieces of the query buffer
  float rel;         // tau' = tau + |tau| rel + A_q
  float rc;          // the |r|^2 coefficient
} p;

// The workgroup's queries times s_q in fp16, row-major (CV4 pieces a query); with COOP, once
// they are in registers, the same memory holds the two row buffers and the scores, [query][row]
// as float bits: within a shared-memory budget of 48 KiB (NVIDIA's) at dim 128.
#ifdef COOP
const uint SM = QW * CV4 > SC_AT + QW * SC / 4u ? QW * CV4 : SC_AT + QW * SC / 4u;
#else
const uint SM = QW * CV4;
#endif
shared uvec4 sm[SM];
shared vec4 qt[QW];  // (W, P, Q) per query

#ifdef COOP
// The TILE rows from r0 into registers (coalesced: invocation t takes pieces t, t + 128, ...),
// then into a row buffer at `at`, each row BP pieces apart. Past the last row the copy's
// buffer still holds whole steps (its rows are rounded up to 64): those rows are never tested.
void stage_rows(uint r0, inout uvec4 pre[PRE]) {
  [[unroll]] for (uint u = 0u; u < PRE; ++u) {
    uint i = gl_LocalInvocationIndex + 128u * u;
    if (i < TILE * CV4) pre[u] = copy[r0 * CV4 + i];
  }
}
void put_rows(uint at, uvec4 pre[PRE]) {
  [[unroll]] for (uint u = 0u; u < PRE; ++u) {
    uint i = gl_LocalInvocationIndex + 128u * u;
    if (i < TILE * CV4) sm[at + (i / CV4) * BP + i % CV4] = pre[u];
  }
}
#endif

void emit(uint q, uint r) {
  if ((deleted[r >> 5] & (1u << (r & 31u))) != 0u) return;
  uint pos = atomicAdd(cand[q], 1u);
  if (pos < p.cap) cand[p.nq + q * p.cap + pos] = r;
}

// The test of (query ql of the workgroup, row r) for score s; nr = |r|, rr = |r|^2 rc.
void test(float s, uint ql, uint r, float nr, float rr, uint qbase) {
  vec4 t = qt[ql];
  if (s * t.x >= fma(nr, t.y, rr) + t.z) emit(qbase + ql, r);
}

void main() {
  uint tid = gl_LocalInvocationIndex;
  // x: the query group, y: the row range (workgroups side by side share rows: L2 hits)
  uint qbase = gl_WorkGroupID.x * QW;

  // The workgroup's queries: terms with the threshold folded in, and the fp16 operands.
  {
    uint q = qbase + tid;
    vec4 t = vec4(0.0, 0.0, INF, 0.0);  // absent queries: Q = inf emits nothing
    float s = 0.0;
    if (q < p.nq) {
      vec4 info = uintBitsToFloat(queries[p.info_off + 2u * q]);
      s = uintBitsToFloat(queries[p.info_off + 2u * q + 1u].x);
      float tau = tkeys[q * p.t_ld + p.t_off];
      float tp = tau + abs(tau) * p.rel + info.w;  // +inf (no threshold): Q = -inf emits every row
      t = vec4(info.x, info.y, info.z - tp, 0.0);
    }
    qt[tid] = t;
    for (uint j = 0u; j < CV4; ++j) {
      uvec4 w = uvec4(0u);
      if (q < p.nq) {
        vec4 a = uintBitsToFloat(queries[q * QV4 + 2u * j]) * s;
        vec4 b = uintBitsToFloat(queries[q * QV4 + 2u * j + 1u]) * s;
        w = uvec4(packHalf2x16(a.xy), packHalf2x16(a.zw), packHalf2x16(b.xy), packHalf2x16(b.zw));
      }
      sm[tid * CV4 + j] = w;
    }
  }
  barrier();

#ifdef COOP
  uint grp = gl_SubgroupID, lane = gl_SubgroupInvocationID;
  fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> a0[8], a1[8];
  [[unroll]] for (uint kb = 0u; kb < KB; ++kb) {
    coopMatLoadNV(a0[kb], sm, (grp * 32u) * CV4 + 2u * kb, CV4, false);
    coopMatLoadNV(a1[kb], sm, (grp * 32u + 16u) * CV4 + 2u * kb, CV4, false);
  }
  barrier();  // every subgroup has its queries: sm now holds rows and scores
#else
  uint grp = tid / 32u, lane = tid % 32u;
#endif
  uint rstart = gl_WorkGroupID.y * p.rows_per_wg;
  uint rend = min(p.n, rstart + p.rows_per_wg);
#ifdef COOP
  uint line0 = grp * 32u * SC;  // the group's first score line (floats from SC_AT)
#endif

#ifdef COOP
  // Steps of TILE rows: rows of step t + 1 wait in pre while step t is multiplied and tested.
  uvec4 pre[PRE];
  uint buf = 0u;
  if (rstart < rend) {
    stage_rows(rstart, pre);
    put_rows(B_AT, pre);
    if (rstart + TILE < rend) stage_rows(rstart + TILE, pre);
  }
  barrier();
  // The test's share of a lane: rows r0 + 4 c4 .. + 3 (one 16-byte load of scores per query) of
  // the group's queries qsub, qsub + 4, ..., qsub + 28.
  uint c4 = lane & 7u, qsub = lane >> 3;
  for (uint r0 = rstart; r0 < rend; r0 += TILE) {
    // The rows' norms, loaded now and used after the products (which hide the load).
    vec4 n4;
    [[unroll]] for (uint e = 0u; e < 4u; ++e) n4[e] = norms[r0 + 4u * c4 + e];
    fcoopmatNV<32, gl_ScopeSubgroup, 16, 8> c0[4], c1[4];
    [[unroll]] for (uint rb = 0u; rb < 4u; ++rb) {
      c0[rb] = fcoopmatNV<32, gl_ScopeSubgroup, 16, 8>(0.0);
      c1[rb] = fcoopmatNV<32, gl_ScopeSubgroup, 16, 8>(0.0);
    }
    uint bat = B_AT + buf * TILE * BP;
    [[unroll]] for (uint kb = 0u; kb < KB; ++kb) {
      [[unroll]] for (uint rb = 0u; rb < 4u; ++rb) {
        fcoopmatNV<16, gl_ScopeSubgroup, 16, 8> b;
        // rows r0 + 8 rb .. + 7 as the columns of a 16 x 8 matrix (column-major: each row's
        // 16 halves of this step are contiguous)
        coopMatLoadNV(b, sm, bat + 8u * rb * BP + 2u * kb, BP, true);
        c0[rb] = coopMatMulAddNV(a0[kb], b, c0[rb]);
        c1[rb] = coopMatMulAddNV(a1[kb], b, c1[rb]);
      }
    }
    // The group's own score lines: subgroup barriers suffice around them.
    [[unroll]] for (uint rb = 0u; rb < 4u; ++rb) {  // (in 16-byte units: SC / 4 a line)
      coopMatStoreNV(c0[rb], sm, SC_AT + (line0 + 8u * rb) / 4u, SC / 4u, false);
      coopMatStoreNV(c1[rb], sm, SC_AT + (line0 + 16u * SC + 8u * rb) / 4u, SC / 4u, false);
    }
    subgroupMemoryBarrierShared();
    subgroupBarrier();
    vec4 nr4 = sqrt(n4), rr4 = n4 * p.rc;
    [[unroll]] for (uint it = 0u; it < 8u; ++it) {
      uint qi = 4u * it + qsub;
      vec4 sv = uintBitsToFloat(sm[SC_AT + (line0 + qi * SC) / 4u + c4]);
      vec4 t = qt[grp * 32u + qi];
      bvec4 hit = greaterThanEqual(sv * t.x, fma(nr4, vec4(t.y), rr4) + t.z);
      if (any(hit)) {
        [[unroll]] for (uint e = 0u; e < 4u; ++e) {
          uint r = r0 + 4u * c4 + e;
          if (hit[e] && r < rend) emit(qbase + grp * 32u + qi, r);
        }
      }
    }
    subgroupBarrier();
    // The next step's rows into the other buffer (last read by the step before this one, which
    // every subgroup finished before the previous barrier), and the step after into registers.
    if (r0 + TILE < rend) put_rows(B_AT + (buf ^ 1u) * TILE * BP, pre);
    if (r0 + 2u * TILE < rend) stage_rows(r0 + 2u * TILE, pre);
    barrier();
    buf ^= 1u;
  }
#else
  for (uint r0 = rstart; r0 < rend; r0 += TILE) {
    // Rows r0 + lane and r0 + 32 + lane against the group's 32 queries, in fp32 FMAs, each
    // score tested as it is made.
    [[unroll]] for (uint h = 0u; h < 2u; ++h) {
      uint r = r0 + lane + 32u * h;
      if (r >= rend) continue;
      float rn2 = norms[r];
      float nr = sqrt(rn2), rr = rn2 * p.rc;
      for (uint qi = 0u; qi < 32u; ++qi) {
        uint ql = grp * 32u + qi;
        vec4 acc = vec4(0.0);
        for (uint j = 0u; j < CV4; ++j) {
          vec4 xl, xh, ql4, qh4;
          decode8(S_F16, copy[r * CV4 + j], xl, xh);
          decode8(S_F16, sm[ql * CV4 + j], ql4, qh4);
          acc = fma(ql4, xl, acc);
          acc = fma(qh4, xh, acc);
        }
        test((acc.x + acc.y) + (acc.z + acc.w), ql, r, nr, rr, qbase);
      }
    }
  }
#endif
}
