/* rng.c — the random numbers behind init and shuffling, and the initialisers.
 *
 * Generator: xoshiro256** with its state filled by splitmix64 from the 64-bit
 * seed (Blackman & Vigna's recommendation: splitmix64 turns any seed, even 0,
 * into a well-mixed non-zero state). Everything is integer arithmetic, so a
 * seed gives the same numbers on every machine and for both real types.
 * Uniforms use the top 53 bits; normals use Box-Muller, both values of each
 * pair, generated in double and then rounded to mach_real.
 */
#include <math.h>

#include "rt.h"

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

void mach_rng_seed(struct mach_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mach_rng_next(struct mach_rng *r) {
  uint64_t *s = r->s;
  uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return out;
}

double mach_rng_uniform(struct mach_rng *r) {
  return (double)(mach_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Lemire's rejection method would be faster; plain rejection of the top
 * partial range is simpler and shuffling is not hot. */
uint64_t mach_rng_below(struct mach_rng *r, uint64_t n) {
  uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
  do
    x = mach_rng_next(r);
  while (x >= lim);
  return x % n;
}

/* Box-Muller: u1 in (0, 1] so the log is finite. */
static void normal_pair(struct mach_rng *r, double *a, double *b) {
  const double two_pi = 6.283185307179586476925286766559;
  double u1 = 1.0 - mach_rng_uniform(r), u2 = mach_rng_uniform(r);
  double rad = sqrt(-2.0 * log(u1));
  *a = rad * cos(two_pi * u2);
  *b = rad * sin(two_pi * u2);
}

static void init_one(const struct mach_param *p, struct mach_rng *r, mach_real *w) {
  double s = p->init_scale, a, b;
  long i;
  switch (p->init) {
  case MACH_INIT_ZEROS:
    for (i = 0; i < p->size; i++)
      w[i] = 0;
    break;
  case MACH_INIT_ONES:
    for (i = 0; i < p->size; i++)
      w[i] = 1;
    break;
  case MACH_INIT_UNIFORM:
    for (i = 0; i < p->size; i++)
      w[i] = (mach_real)(s * (2.0 * mach_rng_uniform(r) - 1.0));
    break;
  case MACH_INIT_NORMAL:
    for (i = 0; i + 1 < p->size; i += 2) {
      normal_pair(r, &a, &b);
      w[i] = (mach_real)(s * a);
      w[i + 1] = (mach_real)(s * b);
    }
    if (i < p->size) {
      normal_pair(r, &a, &b);
      w[i] = (mach_real)(s * a);
    }
    break;
  }
}

void mach_init_params(const struct mach_model *m, uint64_t seed, mach_real *params) {
  struct mach_rng r;
  mach_rng_seed(&r, seed);
  for (int p = 0; p < m->n_params; p++)
    init_one(&m->params[p], &r, params + m->params[p].offset);
}
