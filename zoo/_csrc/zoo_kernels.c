/* Fused elementwise kernels of the batched trainer (CPU, float32), called from zoo/kernels.py via ctypes.
 *
 * Noise: the counter-based stream of zoo/rng.py, bit for bit in its integer part:
 *     x  = splitmix64(key + (counter + pair) * GOLDEN),  counter = epoch << 40 | slot << 24
 *     u1 = ((float)(x >> 40) + 0.5f) * 2^-24,   u2 = (float)((x >> 16) & 0xFFFFFF) * 2^-24
 *     normal[2 pair] = sqrt(-2 log u1) cos(2 pi u2),  normal[2 pair + 1] = sqrt(-2 log u1) sin(2 pi u2)
 * in float32, with the same float32 operations as the torch version (2 pi rounded to float32 first).
 * log, sin, cos and tanh are our own branch-free polynomial versions (Cephes-style, within 2 ulp), so they
 * differ from torch's (SLEEF) by float rounding only.
 *
 * Reproducibility: compile WITHOUT -ffast-math (zoo/kernels.py uses -O3 -march=native -ffp-contract=fast):
 * every sum is then evaluated in the order written here, so an element's result does not depend on the
 * number of threads or on where the element or its network sits in the batch (elements are computed
 * independently; threads split whole networks or whole blocks of elements; tails are padded to full blocks so
 * that every element goes through the same code). Fused multiply-adds (where the CPU has FMA) make results
 * depend on the instruction set, so runs on different CPUs agree to float rounding, not bitwise.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX__) || defined(__SSE2__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define ZOO_ABI_VERSION 9

#define GOLDEN 0x9E3779B97F4A7C15ULL
#define M1 0xBF58476D1CE4E5B9ULL
#define M2 0x94D049BB133111EBULL

/* pairs of normals per block: 64 floats; every element goes through the same block code */
#define BP 32
#define BF (2 * BP)
/* floats per unit of parallel work */
#define CHUNK 2048

int zoo_abi_version(void) { return ZOO_ABI_VERSION; }

int zoo_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

#if defined(__AVX512F__)
#define VL 16
#else
#define VL 8
#endif
typedef float vf __attribute__((vector_size(4 * VL)));
typedef int32_t vi __attribute__((vector_size(4 * VL)));
typedef float vf8 __attribute__((vector_size(32)));

/* the value v is rounded to float here: the compiler may not fuse the operation that made it into a later
 * multiply-add (an empty asm that must see v in a vector register, or else in memory) */
#if defined(__AVX512F__) && (defined(__x86_64__) || defined(__i386__))
#define ROUNDED(v) __asm__("" : "+v"(v))
#elif defined(__AVX__) && (defined(__x86_64__) || defined(__i386__))
#define ROUNDED(v) __asm__("" : "+x"(v))
#else
#define ROUNDED(v) __asm__("" : "+m"(v))
#endif
#if defined(__AVX__) && (defined(__x86_64__) || defined(__i386__))
#define ROUNDED8(v) __asm__("" : "+x"(v)) /* the same for 8-float vectors */
#else
#define ROUNDED8(v) __asm__("" : "+m"(v))
#endif
#if defined(__SSE2__) && (defined(__x86_64__) || defined(__i386__))
#define ROUNDED_S(v) __asm__("" : "+x"(v)) /* ... and for one float */
#else
#define ROUNDED_S(v) __asm__("" : "+m"(v))
#endif

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vsel(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }
static inline vf vbroad(float x) { return (vf){0} + x; }
static inline vi vbroadi(int32_t x) { return (vi){0} + x; }
static inline vf8 vload8(const float *p) { vf8 v; memcpy(&v, p, sizeof v); return v; }

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * M1;
    z = (z ^ (z >> 27)) * M2;
    return z ^ (z >> 31);
}

/* natural log of a normal positive finite x: x = m 2^e with m in [sqrt(1/2), sqrt(2)),
 * log m = 2 atanh(s) = 2 (s + s^3/3 + ... + s^9/9), s = (m - 1) / (m + 1), |s| < 0.172 (< 1.7 ulp) */
static inline vf log_pos(vf x) {
    vi ix = (vi)x;
    vi e = (ix - 0x3f3504f3) >> 23; /* 0x3f3504f3: the bits of sqrt(1/2) */
    vf m = (vf)(ix - (e << 23));
    vf ef = __builtin_convertvector(e, vf);
    vf s = (m - 1.0f) / (m + 1.0f);
    vf s2 = s * s;
    vf p = vbroad(2.0f / 9.0f);
    p = p * s2 + 2.0f / 7.0f;
    p = p * s2 + 2.0f / 5.0f;
    p = p * s2 + 2.0f / 3.0f;
    p = p * s2 * s;
    vf r = (s + s) + p;
    return (r + ef * (-2.12194440e-4f)) + ef * 0.693359375f;
}

/* sin and cos of 0 <= x < 8 (Cephes sinf/cosf: reduction by pi/4 in three exact parts) */
static inline void sincos_small(vf x, vf *s, vf *c) {
    vi j = __builtin_convertvector(x * 1.27323954473516f, vi);
    j = j + (j & 1);
    vf y = __builtin_convertvector(j, vf);
    vf r = ((x - y * 0.78515625f) - y * 2.4187564849853515625e-4f) - y * 3.77489497744594108e-8f;
    vi q = (j >> 1) & 3;
    vf z = r * r;
    vf ps = vbroad(-1.9515295891E-4f);
    ps = ps * z + 8.3321608736E-3f;
    ps = ps * z - 1.6666654611E-1f;
    ps = ps * z * r + r;
    vf pc = vbroad(2.443315711809948E-005f);
    pc = pc * z - 1.388731625493765E-003f;
    pc = pc * z + 4.166664568298827E-002f;
    pc = pc * z * z - 0.5f * z + 1.0f;
    vi swap = -(q & 1);
    vi sflip = ((q >> 1) & 1) << 31;
    vi cflip = (((q + 1) >> 1) & 1) << 31;
    *s = (vf)((vi)vsel(swap, pc, ps) ^ sflip);
    *c = (vf)((vi)vsel(swap, ps, pc) ^ cflip);
}

/* tanh (Cephes tanhf: odd polynomial below 0.625, 1 - 2 / (exp(2|x|) + 1) above); NaN propagates */
static inline vf tanh_v(vf x) {
    vi sign = (vi)x & (int32_t)0x80000000;
    vf ax = (vf)((vi)x & 0x7fffffff);
    vf cx = vsel(ax > 10.0f, vbroad(10.0f), ax);
    cx = vsel(ax == ax, cx, vbroad(0.0f)); /* NaN -> 0 in the exp branch (the polynomial branch keeps NaN) */
    /* exp(2 cx), 0 <= 2 cx <= 20 (Cephes expf) */
    vf t = cx + cx;
    vi ni = __builtin_convertvector(t * 1.44269504088896341f + 0.5f, vi);
    vf n = __builtin_convertvector(ni, vf);
    vf r = t - n * 0.693359375f;
    r = r - n * (-2.12194440e-4f);
    vf r2 = r * r;
    vf p = vbroad(1.9875691500E-4f);
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r2 + r + 1.0f;
    vf e = p * (vf)((ni + 127) << 23);
    vf big = 1.0f - 2.0f / (e + 1.0f);
    vf z = ax * ax;
    vf s = vbroad(-5.70498872745E-3f);
    s = s * z + 2.06390887954E-2f;
    s = s * z - 5.37397155531E-2f;
    s = s * z + 1.33314422036E-1f;
    s = s * z - 3.33332819422E-1f;
    s = s * z * ax + ax;
    return (vf)((vi)vsel(ax >= 0.625f, big, s) | sign);
}

/* BF standard normals: pairs c0 .. c0 + BP - 1 of stream `key` (c0 includes the epoch/slot counter) */
static inline void normal_block(uint64_t key, uint64_t c0, float *out) {
    float u1[BP] __attribute__((aligned(64))), u2[BP] __attribute__((aligned(64)));
    float rad[BP] __attribute__((aligned(64))), sn[BP] __attribute__((aligned(64)));
    float cs[BP] __attribute__((aligned(64)));
    uint64_t v0 = key + c0 * GOLDEN;
    for (int i = 0; i < BP; i++) {
        uint64_t x = mix64(v0 + (uint64_t)i * GOLDEN);
        u1[i] = ((float)(int32_t)(x >> 40) + 0.5f) * 0x1p-24f;
        u2[i] = (float)(int32_t)((x >> 16) & 0xFFFFFFu) * 0x1p-24f;
    }
    for (int i = 0; i < BP; i += VL) {
        vf s, c;
        vstore(rad + i, -2.0f * log_pos(vload(u1 + i)));
        sincos_small(6.28318548202514648f * vload(u2 + i), &s, &c);
        vstore(sn + i, s);
        vstore(cs + i, c);
    }
    for (int i = 0; i < BP; i++) rad[i] = __builtin_sqrtf(rad[i]); /* IEEE sqrt (vsqrtps) */
    for (int i = 0; i < BP; i++) {
        out[2 * i] = rad[i] * cs[i];
        out[2 * i + 1] = rad[i] * sn[i];
    }
}

/* store one vector (VL floats); `nt`: a non-temporal (streaming) store, for data not needed again soon */
static inline void vstore_nt(float *p, vf v, int nt) {
#if defined(__AVX512F__)
    if (nt && ((uintptr_t)p & 63) == 0) {
        _mm512_stream_ps(p, (__m512)v);
        return;
    }
#elif defined(__AVX__)
    if (nt && ((uintptr_t)p & 31) == 0) {
        _mm256_stream_ps(p, (__m256)v);
        return;
    }
#elif defined(__SSE2__)
    if (nt && ((uintptr_t)p & 15) == 0) {
        __m128 lo, hi;
        memcpy(&lo, &v, 16);
        memcpy(&hi, (const char *)&v + 16, 16);
        _mm_stream_ps(p, lo);
        _mm_stream_ps(p + 4, hi);
        return;
    }
#endif
    (void)nt;
    vstore(p, v);
}

static inline void store_fence(void) {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

/* One block of the forward step: z = tanh(pre + sigma * normal), rn = r + alpha * (z - r). */
static inline void fwd_block(const float *pre, const float *drive, const float *r, float *zo, float *rn,
                             uint64_t key, uint64_t c0, float sigma, float alpha, int noise, int nt) {
    float eps[BF] __attribute__((aligned(64)));
    if (noise) normal_block(key, c0, eps);
    for (int i = 0; i < BF; i += VL) {
        vf p = vload(pre + i);
        if (drive) p = p + vload(drive + i); /* the input drive (NULL: already in pre) */
        if (noise) p = p + sigma * vload(eps + i);
        vf z = tanh_v(p), rv = vload(r + i);
        vstore_nt(zo + i, z, nt);
        vstore(rn + i, rv + alpha * (z - rv));
    }
}

/* dot product in a fixed order (8 partial sums, then lanes in order, then the tail); the products are rounded
 * before they are added (whether GCC fuses a running sum's multiply-adds depends on -mtune: not on AMD Zen) */
static inline float dot(const float *a, const float *b, int64_t n) {
    vf8 acc = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        vf8 p = vload8(a + j) * vload8(b + j);
        ROUNDED8(p);
        acc = acc + p;
    }
    float s = acc[0];
    for (int l = 1; l < 8; l++) s = s + acc[l];
    for (; j < n; j++) {
        float p = a[j] * b[j];
        ROUNDED_S(p);
        s = s + p;
    }
    return s;
}

typedef struct {
    int64_t K, B, N;
    const float *pre; int64_t pre_ks;
    const float *r; int64_t r_ks;
    const int64_t *keys; uint64_t base;
    float sigma, alpha;
    float *z; int64_t z_ks;
    float *rn; int64_t rn_ks;
    const float *wout; int64_t wout_ks; /* (O, N) per network, or NULL: no logits */
    const float *bout; int64_t bout_ks; /* (O,) */
    float *logit; int64_t logit_ks;     /* (B, O) logits of rn */
    int64_t O;
    int stream_z;
} fwd_args;

#define ROWS 16 /* rows of a unit of parallel work (even, so that chunks start on a pair) */

static void fwd_chunk(const fwd_args *a, int64_t k, int64_t b0, int64_t b1) {
    int64_t N = a->N, lo = b0 * N, hi = b1 * N;
    const float *P = a->pre + k * a->pre_ks, *R = a->r + k * a->r_ks;
    float *Z = a->z + k * a->z_ks, *RN = a->rn + k * a->rn_ks;
    uint64_t key = (uint64_t)a->keys[k];
    int noise = a->sigma != 0.0f;
    int64_t i = lo;
    for (; i + BF <= hi; i += BF)
        fwd_block(P + i, 0, R + i, Z + i, RN + i, key, a->base + (uint64_t)(i / 2), a->sigma, a->alpha, noise,
                  a->stream_z);
    if (i < hi) { /* tail: pad into a full block so that every element uses the same code */
        float tp[BF] = {0}, tr[BF] = {0}, tz[BF], trn[BF];
        int64_t m = hi - i;
        memcpy(tp, P + i, (size_t)m * 4);
        memcpy(tr, R + i, (size_t)m * 4);
        fwd_block(tp, 0, tr, tz, trn, key, a->base + (uint64_t)(i / 2), a->sigma, a->alpha, noise, 0);
        memcpy(Z + i, tz, (size_t)m * 4);
        memcpy(RN + i, trn, (size_t)m * 4);
    }
    if (a->wout) {
        const float *W = a->wout + k * a->wout_ks, *bo = a->bout + k * a->bout_ks;
        float *L = a->logit + k * a->logit_ks;
        for (int64_t b = b0; b < b1; b++)
            for (int64_t o = 0; o < a->O; o++) L[b * a->O + o] = bo[o] + dot(W + o * N, RN + b * N, N);
    }
}

/* Forward step for K networks of B x N (B * N even; rows of N contiguous floats; per-network strides):
 *     z = tanh(pre + sigma * normal(keys, base)),  rn = r + alpha * (z - r),  logit = bout + rn @ wout^T
 * z is written with streaming stores if stream_z (it is read back only by the backward pass). */
void zoo_fwd_step_f32(const fwd_args *a, int nthreads) {
    int64_t nch = (a->B + ROWS - 1) / ROWS, items = a->K * nch;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && items > 1)
    {
#pragma omp for schedule(static)
        for (int64_t it = 0; it < items; it++) {
            int64_t k = it / nch, b0 = (it % nch) * ROWS, b1 = b0 + ROWS < a->B ? b0 + ROWS : a->B;
            fwd_chunk(a, k, b0, b1);
        }
        store_fence();
    }
#else
    for (int64_t it = 0; it < items; it++) {
        int64_t k = it / nch, b0 = (it % nch) * ROWS, b1 = b0 + ROWS < a->B ? b0 + ROWS : a->B;
        fwd_chunk(a, k, b0, b1);
    }
    store_fence();
#endif
    (void)nthreads;
}

/* out = scale * normal (do_tanh = 0) or tanh(scale * normal) (do_tanh = 1); K networks x n (even) values */
void zoo_normal_f32(int64_t K, int64_t n, const int64_t *keys, uint64_t base, float scale, int do_tanh,
                    float *out, int64_t out_ks, int nthreads) {
    int64_t nch = (n + CHUNK - 1) / CHUNK, items = K * nch;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1 && items > 1)
#endif
    for (int64_t it = 0; it < items; it++) {
        int64_t k = it / nch, lo = (it % nch) * CHUNK, hi = lo + CHUNK < n ? lo + CHUNK : n;
        float *O = out + k * out_ks;
        uint64_t key = (uint64_t)keys[k];
        for (int64_t i = lo; i < hi; i += BF) {
            float eps[BF] __attribute__((aligned(64)));
            normal_block(key, base + (uint64_t)(i / 2), eps);
            for (int j = 0; j < BF; j += VL) {
                vf v = scale * vload(eps + j);
                vstore(eps + j, do_tanh ? tanh_v(v) : v);
            }
            int64_t m = hi - i < BF ? hi - i : BF;
            memcpy(O + i, eps, (size_t)m * 4);
        }
    }
    (void)nthreads;
}

/* out = tanh(x), elementwise (to test the tanh approximation) */
void zoo_tanh_f32(int64_t n, const float *x, float *out) {
    for (int64_t i = 0; i < n; i += VL) {
        float t[VL] = {0};
        int64_t m = n - i < VL ? n - i : VL;
        memcpy(t, x + i, (size_t)m * 4);
        vstore(t, tanh_v(vload(t)));
        memcpy(out + i, t, (size_t)m * 4);
    }
}

typedef struct {
    int64_t K, B, N, O;
    const float *g; int64_t g_ks;      /* dL/dr[t+1] */
    float *z; int64_t z_ks;            /* in: tanh(pre[t]); out: dL/dpre[t] */
    const float *dl; int64_t dl_ks;    /* (B, O) readout gradient wrt the logits of step t */
    const float *wout; int64_t wout_ks;
    float alpha;
    float *h; int64_t h_ks;            /* out: (1 - alpha) g + dl @ wout */
    float *gb; int64_t gb_ks;          /* (nchunks, N) per network: column sums of dL/dpre, accumulated */
} bwd_args;

/* One backward step for K networks (B rows of N units, O readout channels):
 *     dpre = ((z * z - 1) * g) * (-alpha)       (= alpha g (1 - z^2), written over z)
 *     h    = (1 - alpha) * g + dl @ wout
 *     gb[chunk] += column sums of dpre over the chunk's rows (fixed order; chunks of ROWS rows)
 * The caller then adds dpre @ W_rec to h. */
void zoo_bwd_step_f32(const bwd_args *a, int nthreads) {
    int64_t B = a->B, N = a->N, O = a->O, nch = (B + ROWS - 1) / ROWS, items = a->K * nch;
    float na = -a->alpha, keep = 1.0f - a->alpha;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1 && items > 1)
#endif
    for (int64_t it = 0; it < items; it++) {
        int64_t k = it / nch, c = it % nch, b0 = c * ROWS, b1 = b0 + ROWS < B ? b0 + ROWS : B;
        const float *W = a->wout + k * a->wout_ks;
        float *S = a->gb ? a->gb + k * a->gb_ks + c * N : 0;
        for (int64_t b = b0; b < b1; b++) {
            float *restrict Zr = a->z + k * a->z_ks + b * N;
            float *restrict Hr = a->h + k * a->h_ks + b * N;
            const float *restrict Gr = a->g + k * a->g_ks + b * N;
            const float *D = a->dl + k * a->dl_ks + b * O;
            for (int64_t j = 0; j < N; j++) {
                float zz = Zr[j], gg = Gr[j];
                Zr[j] = ((zz * zz - 1.0f) * gg) * na;
                Hr[j] = keep * gg;
            }
            for (int64_t o = 0; o < O; o++) {
                const float *restrict Wo = W + o * N;
                float d = D[o];
                for (int64_t j = 0; j < N; j++) Hr[j] = Hr[j] + d * Wo[j];
            }
            if (S) {
                float *restrict Sr = S;
                for (int64_t j = 0; j < N; j++) Sr[j] = Sr[j] + Zr[j];
            }
        }
    }
    (void)nthreads;
}

/* ======================================================================================================
 * Whole forward and backward passes, one network at a time (network-major order: a network's weights,
 * state and scratch stay in the core's L2 cache for all T steps; only R and Z stream to and from memory).
 * Matrix products: our own (above) where compiled in, else a BLAS sgemm (Fortran interface, column-major,
 * 32-bit ints) whose address the caller provides with zoo_set_blas (torch's MKL); each thread owns whole
 * networks, so there is no synchronisation per time step, and a network's numbers do not depend on K, its
 * position or the threads.
 * ====================================================================================================== */

typedef void (*sgemm_fn)(const char *, const char *, const int *, const int *, const int *, const float *,
                         const float *, const int *, const float *, const int *, const float *, float *,
                         const int *);
typedef int (*set_threads_fn)(int);
static sgemm_fn g_sgemm = 0;
static set_threads_fn g_blas_local_threads = 0;

void zoo_set_blas(void *sgemm, void *set_num_threads_local) {
    g_sgemm = (sgemm_fn)sgemm;
    g_blas_local_threads = (set_threads_fn)set_num_threads_local;
}

int zoo_has_blas(void) { return g_sgemm != 0; }

/* ---- our own matrix product (x86-64 with AVX2 and FMA) ----
 * C (M x N) = [C +] A B, row-major B and C, A element (i, k) at A[i * ars + k * acs] (so A or A^T).
 * Every element is  acc = 0; for k = 0 .. K-1: acc = fma(A[i, k], B[k, j], acc);  C = acc  or  C = C + acc:
 * one fixed order, whatever the tiling, the vector width, the threads or the BLAS; so the products (and the
 * whole C path) give the same bits on every CPU with AVX2 + FMA. Tiles of MR rows x NV vectors of 8 columns
 * keep their sums in registers (B's row vectors too: an empty asm stops the compiler from re-loading them
 * for every row); ragged last columns use masked loads and stores. About 105 GFLOP/s on one Zen 4 core
 * for the trainer's shapes, against 85-90 for MKL's sgemm. */
#if defined(__AVX2__) && defined(__FMA__) && (defined(__x86_64__) || defined(__i386__))
#define ZOO_OWN_GEMM 1
#if defined(__AVX512VL__)
#define GEMM_MR 4
#define GEMM_NV 5 /* 20 sums + 5 B vectors + 1 broadcast: 26 of 32 registers */
#define REG8(v) __asm__("" : "+v"(v))
static inline __m256 load8_masked(const float *p, int n) { return _mm256_maskz_loadu_ps((__mmask8)((1u << n) - 1), p); }
static inline void store8_masked(float *p, __m256 v, int n) { _mm256_mask_storeu_ps(p, (__mmask8)((1u << n) - 1), v); }
#else
#define GEMM_MR 4
#define GEMM_NV 3 /* 12 sums + 3 B vectors + 1 broadcast: the 16 registers of AVX2 */
#define REG8(v) __asm__("" : "+x"(v))
static inline __m256i mask8(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline __m256 load8_masked(const float *p, int n) { return _mm256_maskload_ps(p, mask8(n)); }
static inline void store8_masked(float *p, __m256 v, int n) { _mm256_maskstore_ps(p, mask8(n), v); }
#endif

/* one tile: MR rows x NV vectors; the last vector holds `last` (1..8) valid columns */
static inline __attribute__((always_inline)) void gemm_tile(const int MR, const int NV, int64_t K, const float *A,
                                                            int64_t ars, int64_t acs, const float *B, int64_t ldb,
                                                            float *C, int64_t ldc, int accumulate, int last) {
    __m256 acc[GEMM_MR][GEMM_NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const float *Bk = B + k * ldb;
        __m256 b[GEMM_NV];
        for (int v = 0; v < NV; v++) {
            b[v] = v == NV - 1 && last < 8 ? load8_masked(Bk + 8 * v, last) : _mm256_loadu_ps(Bk + 8 * v);
            REG8(b[v]);
        }
        for (int r = 0; r < MR; r++) {
            __m256 a = _mm256_broadcast_ss(A + r * ars + k * acs);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) {
            float *p = C + r * ldc + 8 * v;
            if (v == NV - 1 && last < 8) {
                __m256 x = acc[r][v];
                if (accumulate) x = _mm256_add_ps(load8_masked(p, last), x);
                store8_masked(p, x, last);
            } else {
                __m256 x = acc[r][v];
                if (accumulate) x = _mm256_add_ps(_mm256_loadu_ps(p), x);
                _mm256_storeu_ps(p, x);
            }
        }
}

#define GEMM_TILE(MR, NV) \
    gemm_tile(MR, NV, K, A + i * ars, ars, acs, B + j, ldb, C + i * ldc + j, ldc, accumulate, last)
#if GEMM_NV == 5
#define GEMM_WIDE(MR) case 4: GEMM_TILE(MR, 4); break; case 5: GEMM_TILE(MR, 5); break;
#else
#define GEMM_WIDE(MR)
#endif
/* one row block, with its number of vectors (1 .. GEMM_NV) a compile-time constant in every case */
#define GEMM_ROWS(MR)                                                                                             \
    switch (nv) {                                                                                                 \
    case 1: GEMM_TILE(MR, 1); break;                                                                              \
    case 2: GEMM_TILE(MR, 2); break;                                                                              \
    case 3: GEMM_TILE(MR, 3); break;                                                                              \
    GEMM_WIDE(MR)                                                                                                 \
    }

static void own_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t ars, int64_t acs, const float *B,
                     int64_t ldb, float *C, int64_t ldc, int accumulate) {
    for (int64_t j = 0; j < N; j += 8 * GEMM_NV) { /* a panel of B (K x 8 NV) stays in L1 for all rows */
        int64_t cols = N - j < 8 * GEMM_NV ? N - j : 8 * GEMM_NV;
        int nv = (int)((cols + 7) / 8), last = (int)(cols - 8 * (nv - 1));
        int64_t i = 0;
        for (; i + GEMM_MR <= M; i += GEMM_MR) GEMM_ROWS(GEMM_MR)
        for (; i < M; i++) GEMM_ROWS(1)
    }
}

/* ---- the same products in 16-float tiles (CPUs with AVX-512F + VL) ----
 * Every element is still  acc = 0; for k = 0 .. K-1: acc = fma(A[i, k], B[k, j], acc);  C = acc  or  C + acc:
 * the vector width only changes how many columns one instruction computes, never the order of one sum, so
 * the results are bitwise those of the 8-float tiles above. On CPUs with two 512-bit FMA units (Intel server
 * cores) a 512-bit FMA does twice the work of a 256-bit one in the same time; on Zen 4 it costs two. Tiles of
 * G16_MR rows x up to G16_NV vectors: 3 x 7 = 21 sums + 7 B vectors + 1 broadcast = 29 of the 32 registers,
 * and one panel of 112 columns covers the trainer's 100 (6 full vectors and a 4-column tail). A tail of at
 * most 8 columns is a masked 8-float vector (one 256-bit FMA: on Zen 4 half the cost of a masked 512-bit one). */
#if defined(__AVX512F__) && defined(__AVX512VL__)
#define ZOO_GEMM16 1
#define G16_MR 3
#define G16_NV 7

/* one tile: MR rows x NV vectors; the last vector holds `last` valid columns: 1..8 in an 8-float vector if
 * HALF, else 1..16 in a 16-float one */
static inline __attribute__((always_inline)) void gemm16_tile(const int MR, const int NV, const int HALF, int64_t K,
                                                              const float *A, int64_t ars, int64_t acs,
                                                              const float *B, int64_t ldb, float *C, int64_t ldc,
                                                              int accumulate, int last) {
    const int NF = HALF ? NV - 1 : NV; /* 16-float vectors */
    const __mmask16 m16 = (__mmask16)((1u << last) - 1);
    const __mmask8 m8 = (__mmask8)((1u << last) - 1);
    __m512 acc[G16_MR][G16_NV];
    __m256 acch[G16_MR];
    for (int r = 0; r < MR; r++) {
        for (int v = 0; v < NF; v++) acc[r][v] = _mm512_setzero_ps();
        if (HALF) acch[r] = _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < K; k++) {
        const float *Bk = B + k * ldb;
        __m512 b[G16_NV];
        __m256 bh = _mm256_setzero_ps();
        for (int v = 0; v < NF; v++) {
            b[v] = !HALF && v == NV - 1 && last < 16 ? _mm512_maskz_loadu_ps(m16, Bk + 16 * v)
                                                     : _mm512_loadu_ps(Bk + 16 * v);
            __asm__("" : "+v"(b[v]));
        }
        if (HALF) {
            bh = _mm256_maskz_loadu_ps(m8, Bk + 16 * NF);
            __asm__("" : "+v"(bh));
        }
        for (int r = 0; r < MR; r++) {
            const float *ap = A + r * ars + k * acs;
            __m512 a = _mm512_set1_ps(*ap);
            for (int v = 0; v < NF; v++) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
            if (HALF) acch[r] = _mm256_fmadd_ps(_mm512_castps512_ps256(a), bh, acch[r]);
        }
    }
    for (int r = 0; r < MR; r++) {
        for (int v = 0; v < NF; v++) {
            float *p = C + r * ldc + 16 * v;
            __m512 x = acc[r][v];
            if (!HALF && v == NV - 1 && last < 16) {
                if (accumulate) x = _mm512_add_ps(_mm512_maskz_loadu_ps(m16, p), x);
                _mm512_mask_storeu_ps(p, m16, x);
            } else {
                if (accumulate) x = _mm512_add_ps(_mm512_loadu_ps(p), x);
                _mm512_storeu_ps(p, x);
            }
        }
        if (HALF) {
            float *p = C + r * ldc + 16 * NF;
            __m256 x = acch[r];
            if (accumulate) x = _mm256_add_ps(_mm256_maskz_loadu_ps(m8, p), x);
            _mm256_mask_storeu_ps(p, m8, x);
        }
    }
}

#define G16_TILE(MR, NV, HALF) \
    gemm16_tile(MR, NV, HALF, K, A + i * ars, ars, acs, B + j, ldb, C + i * ldc + j, ldc, accumulate, last)
#define G16_CASE(MR, NV) \
    case NV: if (half) G16_TILE(MR, NV, 1); else G16_TILE(MR, NV, 0); break;
/* one row block, with its number of vectors (1 .. G16_NV) and tail kind compile-time constants in every case */
#define G16_ROWS(MR)                                                                                              \
    switch (nv) {                                                                                                 \
    case 1: G16_TILE(MR, 1, 0); break;                                                                            \
    G16_CASE(MR, 2) G16_CASE(MR, 3) G16_CASE(MR, 4) G16_CASE(MR, 5) G16_CASE(MR, 6) G16_CASE(MR, 7)               \
    }

static void own_gemm16(int64_t M, int64_t N, int64_t K, const float *A, int64_t ars, int64_t acs, const float *B,
                       int64_t ldb, float *C, int64_t ldc, int accumulate) {
    for (int64_t j = 0; j < N; j += 16 * G16_NV) {
        int64_t cols = N - j < 16 * G16_NV ? N - j : 16 * G16_NV;
        int nv = (int)((cols + 15) / 16), last = (int)(cols - 16 * (nv - 1));
        int half = nv > 1 && last <= 8; /* (a lone vector stays 16-float: one case less, same bits) */
        int64_t i = 0;
        for (; i + G16_MR <= M; i += G16_MR) G16_ROWS(G16_MR)
        for (; i < M; i++) G16_ROWS(1)
    }
}
#endif
#endif

int zoo_has_gemm16(void) {
#ifdef ZOO_GEMM16
    return 1;
#else
    return 0;
#endif
}

int zoo_has_own_gemm(void) {
#ifdef ZOO_OWN_GEMM
    return 1;
#else
    return 0;
#endif
}

/* which matrix products the passes use: 0 ours where compiled in (16-float tiles where compiled in, else
 * 8-float), 1 BLAS, 2 none (profiling only), 3 ours in 8-float tiles (the same bits as 0; to compare) */
static int g_gemm_mode = 0;
void zoo_set_gemm(int mode) { g_gemm_mode = mode; }

/* the matrix products the passes use now: 0 none (the passes cannot run), 1 ours (8-float tiles), 2 BLAS,
 * 3 do-nothing, 4 ours (16-float tiles) */
int zoo_gemm_kind(void) {
    if (g_gemm_mode == 2) return 3;
    if (g_gemm_mode == 0 && zoo_has_gemm16()) return 4;
    if ((g_gemm_mode == 0 || g_gemm_mode == 3) && zoo_has_own_gemm()) return 1;
    return g_sgemm ? 2 : 0;
}

static int gemm_available(void) { return zoo_gemm_kind() != 0; }

/* C (M x N) = [C +] op(A) B for the passes: A is (M x K) row-major (trans_a 0) or (K x M) row-major
 * (trans_a 1), with row length lda; B (K x N) and C row-major */
static void matmul(int trans_a, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                   int64_t ldb, float *C, int64_t ldc, int accumulate) {
    if (g_gemm_mode == 2) return;
#ifdef ZOO_GEMM16
    if (g_gemm_mode == 0) {
        own_gemm16(M, N, K, A, trans_a ? 1 : lda, trans_a ? lda : 1, B, ldb, C, ldc, accumulate);
        return;
    }
#endif
#ifdef ZOO_OWN_GEMM
    if (g_gemm_mode == 0 || g_gemm_mode == 3) {
        own_gemm(M, N, K, A, trans_a ? 1 : lda, trans_a ? lda : 1, B, ldb, C, ldc, accumulate);
        return;
    }
#endif
    /* row-major C = op(A) B through the column-major sgemm: C^T = B^T op(A)^T */
    char ta = trans_a ? 'T' : 'N', tb = 'N';
    int m = (int)M, n = (int)N, k = (int)K, la = (int)lda, lb = (int)ldb, lc = (int)ldc;
    float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    g_sgemm(&tb, &ta, &n, &m, &k, &one, B, &lb, A, &la, &beta, C, &lc);
}

static float *scratch_alloc(size_t nfloats) {
    void *p = 0;
    if (posix_memalign(&p, 64, nfloats * sizeof(float) + 64)) return 0;
    return (float *)p;
}

typedef struct {
    int64_t K, T, B, N, O, C;
    const float *W; int64_t W_ks;           /* W_rec (N, N) */
    const float *drive_cue; int64_t dc_ks;  /* (B, N): W_in u_cue + b_in + b_rec, for the C cue steps */
    const float *bias; int64_t bias_ks;     /* (N): b_in + b_rec, for the other steps */
    const float *wout; int64_t wout_ks;     /* (O, N) */
    const float *bout; int64_t bout_ks;     /* (O) */
    const int64_t *keys;
    uint64_t epoch_ctr;                     /* epoch << 40 */
    float sigma, alpha, init_std;
    float *R; int64_t R_ks;                 /* (T + 1, B, N) states */
    float *Z; int64_t Z_ks;                 /* (T, B, N) tanh values */
    float *L; int64_t L_ks;                 /* (T, B, O) logits of r[0 .. T-1] */
} fwd_pass_args;

static void logits_rows(const float *W, const float *bo, const float *r, float *L, int64_t B, int64_t N,
                        int64_t O) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t o = 0; o < O; o++) L[b * O + o] = bo[o] + dot(W + o * N, r + b * N, N);
}

static void fwd_pass_one(const fwd_pass_args *a, int64_t k, float *pre, float *Wt, float *biasfull) {
    const int64_t B = a->B, N = a->N, O = a->O, BN = B * N, T = a->T;
    const float *W = a->W + k * a->W_ks, *dc = a->drive_cue + k * a->dc_ks, *bias = a->bias + k * a->bias_ks;
    const float *wo = a->wout + k * a->wout_ks, *bo = a->bout + k * a->bout_ks;
    float *R = a->R + k * a->R_ks, *Z = a->Z + k * a->Z_ks, *L = a->L + k * a->L_ks;
    uint64_t key = (uint64_t)a->keys[k];
    int noise = a->sigma != 0.0f;
    for (int64_t i = 0; i < N; i++) /* W_rec^T, so that the step's product is a plain (no-transpose) sgemm */
        for (int64_t j = 0; j < N; j++) Wt[j * N + i] = W[i * N + j];
    for (int64_t b = 0; b < B; b++) memcpy(biasfull + b * N, bias, (size_t)N * 4); /* the drive after the cue */
    /* r[0] = tanh(init_std * normal(slot 0)) and its logits */
    for (int64_t i = 0; i < BN; i += BF) {
        float eps[BF] __attribute__((aligned(64)));
        normal_block(key, a->epoch_ctr + (uint64_t)(i / 2), eps);
        for (int j = 0; j < BF; j += VL) vstore(eps + j, tanh_v(a->init_std * vload(eps + j)));
        int64_t m = BN - i < BF ? BN - i : BF;
        memcpy(R + i, eps, (size_t)m * 4);
    }
    logits_rows(wo, bo, R, L, B, N, O);
    for (int64_t t = 0; t < T; t++) {
        const float *r = R + t * BN;
        float *rn = R + (t + 1) * BN, *z = Z + t * BN;
        matmul(0, B, N, N, r, N, Wt, N, pre, N, 0);
        const float *drive = t < a->C ? dc : biasfull; /* added to pre inside the block (one pass less) */
        uint64_t base = a->epoch_ctr | ((uint64_t)(t + 1) << 24);
        int64_t i = 0;
        /* plain stores: streaming R or Z to memory measured no faster here */
        for (; i + BF <= BN; i += BF)
            fwd_block(pre + i, drive + i, r + i, z + i, rn + i, key, base + (uint64_t)(i / 2), a->sigma, a->alpha,
                      noise, 0);
        if (i < BN) {
            float tp[BF] = {0}, td[BF] = {0}, tr[BF] = {0}, tz[BF], trn[BF];
            int64_t m = BN - i;
            memcpy(tp, pre + i, (size_t)m * 4);
            memcpy(td, drive + i, (size_t)m * 4);
            memcpy(tr, r + i, (size_t)m * 4);
            fwd_block(tp, td, tr, tz, trn, key, base + (uint64_t)(i / 2), a->sigma, a->alpha, noise, 0);
            memcpy(z + i, tz, (size_t)m * 4);
            memcpy(rn + i, trn, (size_t)m * 4);
        }
        if (t + 1 < T) logits_rows(wo, bo, rn, L + (t + 1) * B * O, B, N, O);
    }
}

/* Forward pass of K networks; returns 0, or -1 without matrix products, -2 if scratch memory could not be
 * allocated. */
int zoo_fwd_pass_f32(const fwd_pass_args *a, int nthreads) {
    if (!gemm_available()) return -1;
    int err = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && a->K > 1)
#endif
    {
        int prev = g_blas_local_threads ? g_blas_local_threads(1) : 0;
        size_t bn = ((size_t)(a->B * a->N) + 15) & ~(size_t)15;
        float *pre = scratch_alloc(2 * bn + (size_t)(a->N * a->N));
        if (!pre) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            err = -2;
        }
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t k = 0; k < a->K; k++)
            if (pre) fwd_pass_one(a, k, pre, pre + 2 * bn, pre + bn);
        free(pre);
        store_fence();
        if (g_blas_local_threads) g_blas_local_threads(prev);
    }
    (void)nthreads;
    return err;
}

typedef struct {
    int64_t K, T, B, N, O, C, I;
    const float *W; int64_t W_ks;           /* W_rec (N, N) */
    const float *wout; int64_t wout_ks;     /* (O, N) */
    const float *U;                         /* (B, I) input during the C cue steps (shared by all networks) */
    float alpha;
    const float *R; int64_t R_ks;           /* (T + 1, B, N) */
    const float *Z; int64_t Z_ks;           /* (T, B, N) tanh values (not modified) */
    const float *DL; int64_t DL_ks;         /* (T, B, O) gradient wrt the logits */
    float *gW; int64_t gW_ks;               /* out (N, N) */
    float *gb; int64_t gb_ks;               /* out (N) */
    float *gWin; int64_t gWin_ks;           /* out (N, I) */
    float *gWout; int64_t gWout_ks;         /* out (O, N) */
} bwd_pass_args;

static void bwd_pass_one(const bwd_pass_args *a, int64_t k, float *g, float *h, float *d) {
    const int64_t B = a->B, N = a->N, O = a->O, I = a->I, BN = B * N, T = a->T;
    const float *W = a->W + k * a->W_ks, *wo = a->wout + k * a->wout_ks;
    const float *R = a->R + k * a->R_ks, *Z = a->Z + k * a->Z_ks, *DL = a->DL + k * a->DL_ks;
    float *gW = a->gW + k * a->gW_ks, *gb = a->gb + k * a->gb_ks, *gWin = a->gWin + k * a->gWin_ks;
    float *gWout = a->gWout + k * a->gWout_ks;
    const float na = -a->alpha, keep = 1.0f - a->alpha;
    memset(g, 0, (size_t)BN * 4);
    memset(gW, 0, (size_t)(N * N) * 4);
    memset(gb, 0, (size_t)N * 4);
    memset(gWin, 0, (size_t)(N * I) * 4);
    memset(gWout, 0, (size_t)(O * N) * 4);
    for (int64_t t = T - 1; t >= 0; t--) {
        const float *z = Z + t * BN, *r = R + t * BN, *dl = DL + t * B * O;
        for (int64_t b = 0; b < B; b++) {
            const float *restrict zr = z + b * N, *restrict gr = g + b * N, *restrict rr = r + b * N;
            float *restrict dr = d + b * N, *restrict hr = h + b * N;
            if (O == 2) { /* the model's two outputs: one pass over the row (same operations, same order) */
                const float *w0 = wo, *w1 = wo + N;
                float *gwo0 = gWout, *gwo1 = gWout + N;
                const float dv0 = dl[b * 2], dv1 = dl[b * 2 + 1];
                int64_t j = 0;
                for (; j + VL <= N; j += VL) {
                    vf zz = vload(zr + j), gj = vload(gr + j), rj = vload(rr + j);
                    vf dj = ((zz * zz - 1.0f) * gj) * na;
                    vf hj = keep * gj;
                    ROUNDED(hj); /* as the stored h of the separate loops was: fuse only the dv * w products */
                    hj = hj + dv0 * vload(w0 + j);
                    hj = hj + dv1 * vload(w1 + j);
                    vstore(gwo0 + j, vload(gwo0 + j) + dv0 * rj);
                    vstore(gwo1 + j, vload(gwo1 + j) + dv1 * rj);
                    vstore(dr + j, dj);
                    vstore(hr + j, hj);
                    vstore(gb + j, vload(gb + j) + dj);
                }
                for (; j < N; j++) {
                    float zz = zr[j], gj = gr[j], rj = rr[j];
                    float dj = ((zz * zz - 1.0f) * gj) * na;
                    float hj = keep * gj;
                    ROUNDED(hj);
                    hj = hj + dv0 * w0[j];
                    hj = hj + dv1 * w1[j];
                    gwo0[j] = gwo0[j] + dv0 * rj;
                    gwo1[j] = gwo1[j] + dv1 * rj;
                    dr[j] = dj;
                    hr[j] = hj;
                    gb[j] = gb[j] + dj;
                }
            } else {
                for (int64_t j = 0; j < N; j++) {
                    float zz = zr[j];
                    dr[j] = ((zz * zz - 1.0f) * gr[j]) * na;
                    hr[j] = keep * gr[j];
                }
                for (int64_t o = 0; o < O; o++) {
                    const float *restrict wr = wo + o * N;
                    float *restrict gwo = gWout + o * N;
                    float dv = dl[b * O + o];
                    for (int64_t j = 0; j < N; j++) hr[j] = hr[j] + dv * wr[j];
                    for (int64_t j = 0; j < N; j++) gwo[j] = gwo[j] + dv * rr[j];
                }
                for (int64_t j = 0; j < N; j++) gb[j] = gb[j] + dr[j];
            }
            if (t < a->C)
                for (int64_t c = 0; c < I; c++) {
                    float u = a->U[b * I + c];
                    if (u != 0.0f)
                        for (int64_t j = 0; j < N; j++) gWin[j * I + c] = gWin[j * I + c] + dr[j] * u;
                }
        }
        /* dL/dW_rec += d^T r[t];  dL/dr[t] = h + d W_rec (not needed for r[0]) */
        matmul(1, N, N, B, d, N, r, N, gW, N, 1);
        if (t > 0) {
            matmul(0, B, N, N, d, N, W, N, h, N, 1);
            float *tmp = g;
            g = h;
            h = tmp;
        }
    }
}

/* Backward pass of K networks (after the forward pass and the loss); returns 0, -1 without matrix products, -2 OOM. */
int zoo_bwd_pass_f32(const bwd_pass_args *a, int nthreads) {
    if (!gemm_available()) return -1;
    int err = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && a->K > 1)
#endif
    {
        int prev = g_blas_local_threads ? g_blas_local_threads(1) : 0;
        size_t bn = (size_t)(a->B * a->N);
        bn = (bn + 15) & ~(size_t)15;
        float *buf = scratch_alloc(3 * bn);
        if (!buf) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            err = -2;
        }
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t k = 0; k < a->K; k++)
            if (buf) bwd_pass_one(a, k, buf, buf + bn, buf + 2 * bn);
        free(buf);
        if (g_blas_local_threads) g_blas_local_threads(prev);
    }
    (void)nthreads;
    return err;
}

/* A batch of nb independent products with the passes' matrix products (ours or BLAS, as configured):
 *     C[b] = [C[b] +] op(A[b]) B[b],  op(A) = A (M x K, rows of lda) or A^T (A: K x M, rows of lda)
 * B[b] (K x N, rows of ldb) and C[b] (M x N, rows of ldc) row-major; a_ks, b_ks, c_ks: strides between the
 * products (0 shares one operand). Threads own whole products. Returns 0, or -1 without matrix products.
 * For tests and for benchmarks/bench_train.py's GEMM ceiling. */
int zoo_matmul_f32(int64_t nb, int trans_a, int64_t M, int64_t N, int64_t K, const float *A, int64_t a_ks,
                   int64_t lda, const float *B, int64_t b_ks, int64_t ldb, float *C, int64_t c_ks, int64_t ldc,
                   int accumulate, int nthreads) {
    if (!gemm_available()) return -1;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && nb > 1)
#endif
    {
        int prev = g_blas_local_threads ? g_blas_local_threads(1) : 0;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t b = 0; b < nb; b++)
            matmul(trans_a, M, N, K, A + b * a_ks, lda, B + b * b_ks, ldb, C + b * c_ks, ldc, accumulate);
        if (g_blas_local_threads) g_blas_local_threads(prev);
    }
    (void)nthreads;
    return 0;
}
