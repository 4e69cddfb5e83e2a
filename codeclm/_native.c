/* codeclm._native: the two kernels of the CPU decode step (float32).
 *
 * skinny_mm:  y[m, n] = add[m, n] + sum_k x[m, k] * W[k, n]      for m < M <= 8
 *
 *   A decode step at batch B multiplies B <= 8 rows by every weight matrix once, so
 *   each weight is used B times and the product is bound by how fast the weights
 *   stream from memory. A BLAS sgemm at so few rows streams them at well under the
 *   machine's read bandwidth (see bench/bench_sampler.py); this kernel reads W once, in
 *   order, from a packed layout ([ceil(N/8), K, 8]: each block of 8 output columns
 *   contiguous, see codeclm/generation/native.py), with 8-float accumulators in
 *   registers.
 *
 * attend:  one query per row and head against the KV cache (softmax(q.k / sqrt(D)) . v),
 *   each row over its own number of slots, grouped heads; a vectorised exp.
 *
 * Called from Python with raw addresses (codeclm/generation/native.py checks dtypes,
 * shapes and layouts), so there is no dependency on the torch or numpy headers. The
 * GIL is released while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));

/* CB blocks of 8 output columns (from column j) for MM rows. MM and CB are
 * compile-time constants after inlining, so the MM * CB <= 8 accumulators live in
 * registers; CB > 1 for few rows gives the FMA units independent chains (one row and
 * one block would wait on each multiply-add's latency). */
static inline __attribute__((always_inline)) void
group(const int MM, const int CB, const float *x, Py_ssize_t ldx, const float *w,
      const float *add, float *y, Py_ssize_t K, Py_ssize_t N, Py_ssize_t j)
{
    v8 acc[8][8];
    for (int c = 0; c < CB; c++)
        for (int m = 0; m < MM; m++) {
            v8 z = {0};
            acc[c][m] = z;
        }
    for (Py_ssize_t k = 0; k < K; k++) {
        float xs[8];
        for (int m = 0; m < MM; m++)
            xs[m] = x[m * ldx + k];
        for (int c = 0; c < CB; c++) {
            v8 wv;
            memcpy(&wv, w + (c * K + k) * 8, sizeof wv);
            for (int m = 0; m < MM; m++)
                acc[c][m] += xs[m] * wv;
        }
    }
    for (int c = 0; c < CB; c++) {
        Py_ssize_t jj = j + 8 * c;
        int rem = N - jj < 8 ? (int)(N - jj) : 8; /* < 8 only in the last block */
        for (int m = 0; m < MM; m++) {
            float *dst = y + m * N + jj;
            if (rem == 8) {
                v8 r = acc[c][m];
                if (add) {
                    v8 a;
                    memcpy(&a, add + m * N + jj, sizeof a);
                    r += a;
                }
                memcpy(dst, &r, sizeof r);
                continue;
            }
            float out[8];
            memcpy(out, &acc[c][m], sizeof out);
            for (int i = 0; i < rem; i++)
                dst[i] = (add ? add[m * N + jj + i] : 0.0f) + out[i];
        }
    }
}

static inline __attribute__((always_inline)) void
product(const int MM, const float *x, Py_ssize_t ldx, const float *w, const float *add,
        float *y, Py_ssize_t K, Py_ssize_t N)
{
    const int CB = MM >= 5 ? 1 : MM >= 3 ? 2 : MM == 2 ? 4 : 8;
    Py_ssize_t blocks = (N + 7) / 8, b = 0;
    for (; b + CB <= blocks; b += CB)
        group(MM, CB, x, ldx, w + b * K * 8, add, y, K, N, b * 8);
    for (; b < blocks; b++)
        group(MM, 1, x, ldx, w + b * K * 8, add, y, K, N, b * 8);
}

typedef void (*product_fn)(const float *, Py_ssize_t, const float *, const float *, float *,
                           Py_ssize_t, Py_ssize_t);

/* One function per row count 1..8, compiled for the baseline and, on x86-64, for
 * AVX2 + FMA (picked at import when the CPU has them). */
#define ROWS(S, M, ATTR)                                                                  \
    ATTR static void S##_##M(const float *x, Py_ssize_t ldx, const float *w,              \
                             const float *add, float *y, Py_ssize_t K, Py_ssize_t N)      \
    {                                                                                     \
        product(M, x, ldx, w, add, y, K, N);                                              \
    }
#define ALL_ROWS(S, ATTR)                                                                 \
    ROWS(S, 1, ATTR) ROWS(S, 2, ATTR) ROWS(S, 3, ATTR) ROWS(S, 4, ATTR)                   \
    ROWS(S, 5, ATTR) ROWS(S, 6, ATTR) ROWS(S, 7, ATTR) ROWS(S, 8, ATTR)                   \
    static const product_fn S##_table[8] = {S##_1, S##_2, S##_3, S##_4,                  \
                                            S##_5, S##_6, S##_7, S##_8};

ALL_ROWS(generic, )
#if defined(__x86_64__) && defined(__GNUC__)
ALL_ROWS(avx2, __attribute__((target("avx2,fma"))))
#endif

/* ---------------------------------------------------------------- attention */

/* The sum of a vector's 8 lanes. */
static inline __attribute__((always_inline)) float
hsum(v8 a)
{
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

/* exp(x) for x <= 0 (softmax scores minus their maximum), 8 lanes: Cephes' expf (range
 * reduction by ln 2 in two parts, a degree-6 polynomial; relative error ~1e-7), with
 * x clamped at -87 (exp(-87) ~ 2e-38: nothing beside the maximum's 1). */
static inline __attribute__((always_inline)) v8
exp_nonpositive(v8 x)
{
    typedef int v8i __attribute__((vector_size(32)));
    const v8 lo = {-87.f, -87.f, -87.f, -87.f, -87.f, -87.f, -87.f, -87.f};
    v8i below = x < lo; /* lanes -1 where x < lo (a vector ?: is C++ only) */
    x = (v8)(((v8i)x & ~below) | ((v8i)lo & below));
    v8 y = x * 1.44269504088896341f; /* x / ln 2, <= 0 */
    v8i n = -__builtin_convertvector(0.5f - y, v8i); /* round(y) (0.5 - y > 0: truncation floors) */
    v8 nf = __builtin_convertvector(n, v8);
    v8 r = x - nf * 0.693359375f - nf * -2.12194440e-4f;
    v8 p = 1.9875691500e-4f * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    v8i bits = (n + 127) << 23; /* 2^n */
    v8 scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* One query row (D floats at q) against keys/values t < n (row t at k + t*D, v + t*D):
 * out = softmax(scale * q.k_t) . v_t. `s`: scratch of >= n + 8 floats. D % 8 == 0. */
static inline __attribute__((always_inline)) void
attend_row(const int D8, const float *q, const float *k, const float *v, Py_ssize_t n,
           float scale, float *s, float *out)
{
    v8 qv[16];
    for (int d = 0; d < D8; d++) {
        memcpy(&qv[d], q + 8 * d, sizeof(v8));
        qv[d] *= scale;
    }
    float top = -__builtin_inff();
    for (Py_ssize_t t = 0; t < n; t++) {
        const float *kt = k + t * 8 * D8;
        v8 acc = {0}, acc2 = {0};
        int d = 0;
        for (; d + 1 < D8; d += 2) {
            v8 a, b;
            memcpy(&a, kt + 8 * d, sizeof a);
            memcpy(&b, kt + 8 * d + 8, sizeof b);
            acc += qv[d] * a;
            acc2 += qv[d + 1] * b;
        }
        if (d < D8) {
            v8 a;
            memcpy(&a, kt + 8 * d, sizeof a);
            acc += qv[d] * a;
        }
        float dot = hsum(acc + acc2);
        s[t] = dot;
        top = dot > top ? dot : top;
    }
    for (Py_ssize_t t = n; t < ((n + 7) & ~(Py_ssize_t)7); t++)
        s[t] = -__builtin_inff(); /* pad to whole vectors: exp gives 0 */
    v8 sum = {0};
    for (Py_ssize_t t = 0; t < n; t += 8) {
        v8 e;
        memcpy(&e, s + t, sizeof e);
        e = exp_nonpositive(e - top);
        memcpy(s + t, &e, sizeof e);
        sum += e;
    }
    float total = hsum(sum);
    v8 o[16];
    for (int d = 0; d < D8; d++) {
        v8 z = {0};
        o[d] = z;
    }
    for (Py_ssize_t t = 0; t < n; t++) {
        const float *vt = v + t * 8 * D8;
        float w = s[t];
        for (int d = 0; d < D8; d++) {
            v8 a;
            memcpy(&a, vt + 8 * d, sizeof a);
            o[d] += w * a;
        }
    }
    float inv = 1.0f / total;
    for (int d = 0; d < D8; d++) {
        v8 r = o[d] * inv;
        memcpy(out + 8 * d, &r, sizeof r);
    }
}

typedef void (*attend_fn)(const float *, Py_ssize_t, const float *, const float *, Py_ssize_t,
                          Py_ssize_t, const long long *, Py_ssize_t, float *, Py_ssize_t,
                          Py_ssize_t, Py_ssize_t, int, float, float *);

#define ATTEND(S, ATTR)                                                                   \
    ATTR static void S##_attend(const float *q, Py_ssize_t q_sb, const float *k,          \
                                const float *v, Py_ssize_t kv_sb, Py_ssize_t kv_sh,       \
                                const long long *lengths, Py_ssize_t n, float *out,       \
                                Py_ssize_t B, Py_ssize_t Hq, Py_ssize_t Hkv, int D8,      \
                                float scale, float *s)                                    \
    {                                                                                     \
        Py_ssize_t group = Hq / Hkv;                                                      \
        for (Py_ssize_t b = 0; b < B; b++) {                                              \
            Py_ssize_t nb = lengths ? (Py_ssize_t)lengths[b] : n;                         \
            for (Py_ssize_t h = 0; h < Hq; h++) {                                         \
                Py_ssize_t off = b * kv_sb + (h / group) * kv_sh;                         \
                const float *qh = q + b * q_sb + h * 8 * D8;                              \
                float *oh = out + (b * Hq + h) * 8 * D8;                                  \
                if (D8 == 4)                                                              \
                    attend_row(4, qh, k + off, v + off, nb, scale, s, oh);                \
                else                                                                      \
                    attend_row(D8, qh, k + off, v + off, nb, scale, s, oh);               \
            }                                                                             \
        }                                                                                 \
    }

ATTEND(generic, )
#if defined(__x86_64__) && defined(__GNUC__)
ATTEND(avx2, __attribute__((target("avx2,fma"))))
#endif

static attend_fn attend_impl = generic_attend;

static const product_fn *table = generic_table;
static const char *isa = "generic";

static PyObject *
skinny_mm(PyObject *self, PyObject *args)
{
    Py_ssize_t x, ldx, w, add, y, M, K, N;
    (void)self;
    if (!PyArg_ParseTuple(args, "nnnnnnnn", &x, &ldx, &w, &add, &y, &M, &K, &N))
        return NULL;
    if (M < 1 || M > 8 || K < 1 || N < 1 || ldx < K || !x || !w || !y) {
        PyErr_Format(PyExc_ValueError, "skinny_mm: bad shape M=%zd K=%zd N=%zd ldx=%zd",
                     M, K, N, ldx);
        return NULL;
    }
    product_fn fn = table[M - 1];
    Py_BEGIN_ALLOW_THREADS
    fn((const float *)x, ldx, (const float *)w, (const float *)add, (float *)y, K, N);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *
attend(PyObject *self, PyObject *args)
{
    Py_ssize_t q, q_sb, k, v, kv_sb, kv_sh, lengths, n, out, B, Hq, Hkv, D;
    float scale;
    (void)self;
    if (!PyArg_ParseTuple(args, "nnnnnnnnnnnnnf", &q, &q_sb, &k, &v, &kv_sb, &kv_sh, &lengths,
                          &n, &out, &B, &Hq, &Hkv, &D, &scale))
        return NULL;
    if (B < 1 || Hq < 1 || Hkv < 1 || Hq % Hkv || D < 8 || D % 8 || D > 128 || n < 1
        || !q || !k || !v || !out) {
        PyErr_Format(PyExc_ValueError, "attend: bad shape B=%zd Hq=%zd Hkv=%zd D=%zd n=%zd",
                     B, Hq, Hkv, D, n);
        return NULL;
    }
    if (lengths)
        for (Py_ssize_t b = 0; b < B; b++) {
            long long nb = ((const long long *)lengths)[b];
            if (nb < 1 || nb > n) {
                PyErr_Format(PyExc_ValueError, "attend: row %zd sees %lld slots, not 1..%zd",
                             b, nb, n);
                return NULL;
            }
        }
    float *s = PyMem_RawMalloc(((size_t)n + 8) * sizeof(float));
    if (!s)
        return PyErr_NoMemory();
    Py_BEGIN_ALLOW_THREADS
    attend_impl((const float *)q, q_sb, (const float *)k, (const float *)v, kv_sb, kv_sh,
                (const long long *)lengths, n, (float *)out, B, Hq, Hkv, (int)(D / 8), scale, s);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(s);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"attend", attend, METH_VARARGS,
     "attend(q, q_sb, k, v, kv_sb, kv_sh, lengths, n, out, B, Hq, Hkv, D, scale): one "
     "query per row and head against a KV cache, float32 buffers by address. q [B, Hq, D] "
     "(row stride q_sb floats), keys and values [B, Hkv, T, D] (strides kv_sb, kv_sh, D, "
     "1), out [B, Hq, D] contiguous; row b sees slots < lengths[b] (int64 [B]) or, with "
     "lengths 0, < n, and n is the most any row sees. D % 8 == 0, D <= 128."},

    {"skinny_mm", skinny_mm, METH_VARARGS,
     "skinny_mm(x, ldx, w, add, y, M, K, N): y = add + x @ W for float32 buffers given by "
     "address: x [M, K] with row stride ldx (floats), W packed [ceil(N/8), K, 8], add "
     "[M, N] or 0, y [M, N] contiguous; 1 <= M <= 8. Checks nothing but the sizes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
                                    "The kernels of the CPU decode step: skinny_mm and attend.",
                                    -1, methods};

PyMODINIT_FUNC
PyInit__native(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    /* CODECLM_NATIVE_ISA=generic keeps the baseline build (what a CPU without AVX2, or
     * another architecture, runs): the tests check it against torch too */
    const char *force = getenv("CODECLM_NATIVE_ISA");
    __builtin_cpu_init();
    if (!(force && strcmp(force, "generic") == 0) && __builtin_cpu_supports("avx2")
        && __builtin_cpu_supports("fma")) {
        table = avx2_table;
        attend_impl = avx2_attend;
        isa = "avx2+fma";
    }
#endif
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddStringConstant(m, "ISA", isa) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
