// Merging sorted (key, row) lists of up to 32 pairs held one pair a lane in 32-invocation
// subgroups, by shuffles alone (merge_lists.comp, screen_finish.comp's LISTS variant). The
// includer enables GL_KHR_shader_subgroup_shuffle, defines WG (its workgroup size) and SG (32)
// and includes common.glsl.
#ifndef HIVE_LIST_MERGE_GLSL
#define HIVE_LIST_MERGE_GLSL

// The order of merge_select and select.glsl: smaller key first, ties by the smaller row; empty
// slots are (INF, NONE), after every real pair.
bool pair_less(float ak, uint ar, float bk, uint br) { return ak < bk || (ak == bk && ar < br); }

// (ak, ar) of lane i is the i-th pair of a sorted list A, (bk, br) of a sorted list B: A becomes
// the 32 smallest pairs of both, sorted. Every invocation of the subgroup calls it.
void merge_into(inout float ak, inout uint ar, float bk, uint br, uint lane) {
  float rk = subgroupShuffle(bk, SG - 1u - lane);
  uint rr = subgroupShuffle(br, SG - 1u - lane);
  if (pair_less(rk, rr, ak, ar)) {
    ak = rk;
    ar = rr;
  }
  for (uint j = SG / 2u; j > 0u; j >>= 1) {
    float ok = subgroupShuffleXor(ak, j);
    uint orow = subgroupShuffleXor(ar, j);
    // The lower lane of each pair keeps the smaller pair, the upper one the larger.
    if (pair_less(ok, orow, ak, ar) == ((lane & j) == 0u)) {
      ak = ok;
      ar = orow;
    }
  }
}

shared float lm_key[WG];
shared uint lm_row[WG];

// The workgroup's WG / SG subgroup lists (lane i of subgroup sg holding pair i of its list)
// joined pairwise through shared memory: subgroup 0 ends with the merge of them all. Every
// invocation of the workgroup calls it (barriers).
void join_subgroups(inout float ak, inout uint ar, uint lane, uint sg) {
  lm_key[sg * SG + lane] = ak;
  lm_row[sg * SG + lane] = ar;
  barrier();
  for (uint span = WG / SG / 2u; span > 0u; span >>= 1) {
    if (sg < span) merge_into(ak, ar, lm_key[(sg + span) * SG + lane], lm_row[(sg + span) * SG + lane], lane);
    barrier();
    if (sg < span) {
      lm_key[sg * SG + lane] = ak;
      lm_row[sg * SG + lane] = ar;
    }
    barrier();
  }
}

#endif
