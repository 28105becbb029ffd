// Workgroup top-k of a stream of (key, row) pairs, smallest first, ties broken by the smaller
// row: a sorted list L of KP (a power of two >= k) pairs in shared memory, and a buffer B of BS
// (a power of two >= the workgroup size) candidates that beat the current k-th entry of L.
// When B could overflow in the next round it is sorted (bitonic) and merged into L: the
// elementwise minimum of L (ascending) and B reversed is a bitonic sequence holding the KP
// smallest pairs of both, which a bitonic merge sorts. Only pairs that beat the k-th best so
// far enter B, so after the first few rounds merges are rare.
//
// The includer defines WG (workgroup size), KP, BS and E (specialisation constants), and calls,
// in uniform control flow: sel_init(); then per round up to E sel_offer() by every invocation
// followed by sel_round_end(k); finally sel_finish(k), after which L holds the k best in order.
// BS >= E * WG: a round never overflows B.
#ifndef HIVE_SELECT_GLSL
#define HIVE_SELECT_GLSL

shared float l_key[KP];
shared uint l_row[KP];
shared float b_key[BS];
shared uint b_row[BS];
shared uint b_count;
shared float t_key;  // the k-th best pair so far (INF, NONE until L holds k pairs)
shared uint t_row;

bool pair_less(float ak, uint ar, float bk, uint br) { return ak < bk || (ak == bk && ar < br); }

void sel_init() {
  for (uint i = gl_LocalInvocationIndex; i < KP; i += WG) {
    l_key[i] = INF;
    l_row[i] = NONE;
  }
  if (gl_LocalInvocationIndex == 0) {
    b_count = 0;
    t_key = INF;
    t_row = NONE;
  }
  barrier();
}

// At most E pairs per invocation and round. A NaN key never enters (every comparison is false).
void sel_offer(bool valid, float key, uint row) {
  if (valid && pair_less(key, row, t_key, t_row)) {
    uint i = atomicAdd(b_count, 1u);
    b_key[i] = key;
    b_row[i] = row;
  }
}

void bitonic_step_b(uint len, uint size, uint stride) {
  for (uint t = gl_LocalInvocationIndex; t < len / 2u; t += WG) {
    uint i = (t / stride) * 2u * stride + (t % stride);
    uint j = i + stride;
    bool up = (i & size) == 0u;
    if (pair_less(b_key[j], b_row[j], b_key[i], b_row[i]) == up) {
      float k = b_key[i]; b_key[i] = b_key[j]; b_key[j] = k;
      uint r = b_row[i]; b_row[i] = b_row[j]; b_row[j] = r;
    }
  }
  barrier();
}

// Sorts the first len = next power of two >= count entries of B (the rest of B counts as
// INF), merges them into L and takes the new k-th best as the threshold.
void sel_flush(uint count, uint k) {
  uint len = 2u;
  while (len < count) len <<= 1;
  for (uint i = count + gl_LocalInvocationIndex; i < len; i += WG) {
    b_key[i] = INF;
    b_row[i] = NONE;
  }
  barrier();
  for (uint size = 2u; size <= len; size <<= 1)
    for (uint stride = size >> 1; stride > 0u; stride >>= 1) bitonic_step_b(len, size, stride);
  // L[i] <- min(L[i], B[KP-1-i]); B beyond len counts as INF.
  for (uint i = gl_LocalInvocationIndex; i < KP; i += WG) {
    uint j = KP - 1u - i;
    if (j < len && pair_less(b_key[j], b_row[j], l_key[i], l_row[i])) {
      l_key[i] = b_key[j];
      l_row[i] = b_row[j];
    }
  }
  barrier();
  for (uint stride = KP >> 1; stride > 0u; stride >>= 1) {
    for (uint t = gl_LocalInvocationIndex; t < KP / 2; t += WG) {
      uint i = (t / stride) * 2u * stride + (t % stride);
      uint j = i + stride;
      if (pair_less(l_key[j], l_row[j], l_key[i], l_row[i])) {
        float kk = l_key[i]; l_key[i] = l_key[j]; l_key[j] = kk;
        uint r = l_row[i]; l_row[i] = l_row[j]; l_row[j] = r;
      }
    }
    barrier();
  }
  if (gl_LocalInvocationIndex == 0) {
    t_key = l_key[k - 1u];
    t_row = l_row[k - 1u];
    b_count = 0;
  }
  barrier();
}

// After every invocation's sel_offer of a round.
void sel_round_end(uint k) {
  barrier();
  uint c = b_count;
  barrier();  // everyone has read b_count before a flush resets it
  // Also as soon as the first k candidates are in: until then every entry passes.
  if (c > BS - E * WG || (t_row == NONE && c >= k)) sel_flush(c, k);
}

void sel_finish(uint k) {
  barrier();
  uint c = b_count;
  barrier();
  if (c > 0u) sel_flush(c, k);
}

#endif
