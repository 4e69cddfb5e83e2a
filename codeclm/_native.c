/* codeclm._native: a skinny matrix product for the CPU decode step (float32).
 *
 *     y[m, n] = add[m, n] + sum_k x[m, k] * W[k, n]      for m < M <= 8
 *
 * A decode step at batch B multiplies B <= 8 rows by every weight matrix once, so each
 * weight is used B times and the product is bound by how fast the weights stream from
 * memory. A BLAS sgemm at so few rows streams them at well under the machine's read
 * bandwidth (see bench/bench_sampler.py); this kernel reads W once, in order, from a
 * packed layout ([ceil(N/8), K, 8]: each block of 8 output columns contiguous, see
 * codeclm/generation/native.py), with one 8-float accumulator per row in registers.
 *
 * Called from Python with raw addresses (the caller checks dtypes, shapes and
 * contiguity; codeclm/generation/native.py does), so there is no dependency on the
 * torch or numpy headers. The GIL is released while it runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
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

static PyMethodDef methods[] = {
    {"skinny_mm", skinny_mm, METH_VARARGS,
     "skinny_mm(x, ldx, w, add, y, M, K, N): y = add + x @ W for float32 buffers given by "
     "address: x [M, K] with row stride ldx (floats), W packed [ceil(N/8), K, 8], add "
     "[M, N] or 0, y [M, N] contiguous; 1 <= M <= 8. Checks nothing but the sizes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
                                    "A skinny float32 matrix product for the CPU decode step.",
                                    -1, methods};

PyMODINIT_FUNC
PyInit__native(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        table = avx2_table;
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
