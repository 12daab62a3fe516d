/*
 * vizdebug._rowkernel: statistics rows of many CPU tensors in one call, without the GIL.
 *
 * The statistics worker of vizdebug.torch hands over the address, size and dtype of every
 * tensor it has queued; this computes each tensor's packed row (vizdebug.stats.COLUMNS, then
 * the histogram counts) in two passes over its memory: one fused, vectorised pass for the
 * exact moments (minimum, maximum, zero count; sums and sums of squares in float64), and one
 * that bins the values, or above vizdebug.stats.HIST_SAMPLE elements a fixed sample of them,
 * as numpy.histogram does in float64. A tensor holding NaN or Inf takes a branching pass that
 * counts them and keeps them out of every statistic and an exact histogram, as the numpy
 * reference does. The same work as torch operations took twenty to thirty kernel dispatches a
 * tensor and five to seven passes over its memory (three times as long on a Transformer step).
 *
 * The caller (vizdebug/torch/cpubatch.py) guarantees that every address points at a live,
 * contiguous tensor of the stated dtype and size for the duration of the call. The values may
 * change under the read (training modifying a tensor in place; the worker then drops the row):
 * every bin index is clamped into range before it is used, whatever the values.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { F32 = 0, F64 = 1, F16 = 2, BF16 = 3 };
enum { SPEC = 6 }; /* per tensor: address, numel, dtype code, sample address, sample length, and
                     the index of an earlier tensor with the same contents (its row is copied) */
enum { HEAD = 12 };  /* the fixed columns of a row */
enum { SPLIT = 8 };  /* histogram copies: a hot bin (ReLU's zeros) does not serialise increments */
enum { BLOCK = 256 }; /* bin indices computed a block at a time (vectorised), then counted */

#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && !defined(__clang__)
/* function clones need glibc's ifunc; elsewhere the baseline build only */
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* GCC/Clang vector extensions: 32-byte vectors, split in halves where the target has 16 */
typedef float vf8 __attribute__((vector_size(32)));
typedef float vf4 __attribute__((vector_size(16)));
typedef int32_t vi8 __attribute__((vector_size(32)));
typedef double vd4 __attribute__((vector_size(32)));
typedef int64_t vl4 __attribute__((vector_size(32)));

static inline float bf16_value(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float f16_value(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t rest = h & 0x7fffu;
    uint32_t u;
    float f;
    if (rest >= 0x7c00u) { /* Inf or NaN */
        u = sign | 0x7f800000u | ((rest & 0x3ffu) << 13);
        memcpy(&f, &u, sizeof f);
        return f;
    }
    u = rest << 13; /* exponent and mantissa in place; rebias by scaling (handles subnormals) */
    memcpy(&f, &u, sizeof f);
    f *= 0x1p112f;
    return sign ? -f : f;
}

/* float16 and bfloat16 values widened to float32 (exactly), so one kernel serves all three */
static void widen(const uint16_t *h, int64_t n, int code, float *out)
{
    if (code == BF16)
        for (int64_t i = 0; i < n; i++)
            out[i] = bf16_value(h[i]);
    else
        for (int64_t i = 0; i < n; i++)
            out[i] = f16_value(h[i]);
}

typedef struct {
    double sum, squares, zeros, lo, hi, nan, posinf, neginf, finite;
} Moments;

/*
 * The fused pass, assuming every value finite (the sum tells: NaN and Inf always reach it):
 * sums and sums of squares in float64, minimum, maximum and zero count in the input's type,
 * eight lanes at a time (four for float64).
 */
VECTOR_CLONES static void moments_f32(const float *x, int64_t n, Moments *r)
{
    vd4 s0 = {0}, s1 = {0}, q0 = {0}, q1 = {0};
    vf8 lo = (vf8){0} + x[0], hi = lo;
    double zeros = 0;
    int64_t i = 0;
    while (i + 8 <= n) {
        vi8 z = {0}; /* flushed every 2^28 vectors: an int32 lane cannot overflow */
        int64_t stop = n - i > ((int64_t)8 << 28) ? i + ((int64_t)8 << 28) : n;
        for (; i + 8 <= stop; i += 8) {
            vf8 v;
            vf4 a, b;
            memcpy(&v, x + i, sizeof v);
            memcpy(&a, x + i, sizeof a);
            memcpy(&b, x + i + 4, sizeof b);
            vd4 da = __builtin_convertvector(a, vd4), db = __builtin_convertvector(b, vd4);
            s0 += da;
            s1 += db;
            q0 += da * da;
            q1 += db * db;
            z -= (vi8)(v == 0);
            vi8 below = v < lo, above = v > hi;
            lo = (vf8)(((vi8)v & below) | ((vi8)lo & ~below));
            hi = (vf8)(((vi8)v & above) | ((vi8)hi & ~above));
        }
        for (int k = 0; k < 8; k++)
            zeros += z[k];
    }
    double S = 0, Q = 0;
    float LO = x[0], HI = x[0];
    for (int k = 0; k < 4; k++) {
        S += s0[k] + s1[k];
        Q += q0[k] + q1[k];
    }
    for (int k = 0; k < 8; k++) {
        LO = lo[k] < LO ? lo[k] : LO;
        HI = hi[k] > HI ? hi[k] : HI;
    }
    for (; i < n; i++) {
        double d = x[i];
        S += d;
        Q += d * d;
        zeros += x[i] == 0;
        LO = x[i] < LO ? x[i] : LO;
        HI = x[i] > HI ? x[i] : HI;
    }
    *r = (Moments){S, Q, zeros, LO, HI, 0, 0, 0, (double)n};
}

VECTOR_CLONES static void moments_f64(const double *x, int64_t n, Moments *r)
{
    vd4 s = {0}, q = {0}, lo = (vd4){0} + x[0], hi = lo;
    vl4 z = {0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        vd4 v;
        memcpy(&v, x + i, sizeof v);
        s += v;
        q += v * v;
        z -= (vl4)(v == 0);
        vl4 below = v < lo, above = v > hi;
        lo = (vd4)(((vl4)v & below) | ((vl4)lo & ~below));
        hi = (vd4)(((vl4)v & above) | ((vl4)hi & ~above));
    }
    double S = 0, Q = 0, zeros = 0, LO = x[0], HI = x[0];
    for (int k = 0; k < 4; k++) {
        S += s[k];
        Q += q[k];
        zeros += (double)z[k];
        LO = lo[k] < LO ? lo[k] : LO;
        HI = hi[k] > HI ? hi[k] : HI;
    }
    for (; i < n; i++) {
        S += x[i];
        Q += x[i] * x[i];
        zeros += x[i] == 0;
        LO = x[i] < LO ? x[i] : LO;
        HI = x[i] > HI ? x[i] : HI;
    }
    *r = (Moments){S, Q, zeros, LO, HI, 0, 0, 0, (double)n};
}

/*
 * careful_*: the branching pass for a tensor that holds NaN or Inf.
 * deviation_*: the exact second pass of the standard deviation when the mean dominates.
 * bin_*: each value's (or each sampled value's) bin as numpy.histogram computes it in float64,
 * (x - lo) * (bins / (hi - lo)) truncated, the maximum in the last bin; indices a block at a
 * time, counted into SPLIT copies. bin_careful_*: the same, skipping NaN and Inf.
 */
#define DEFINE_KERNELS(T)                                                                      \
    static void careful_##T(const T *x, int64_t n, Moments *r)                                 \
    {                                                                                          \
        double S = 0, Q = 0, Z = 0, nan = 0, pos = 0, neg = 0, fin = 0;                        \
        double LO = NAN, HI = NAN;                                                             \
        for (int64_t i = 0; i < n; i++) {                                                      \
            double d = (double)x[i];                                                           \
            if (isnan(d)) {                                                                    \
                nan += 1;                                                                      \
            } else if (isinf(d)) {                                                             \
                if (d > 0)                                                                     \
                    pos += 1;                                                                  \
                else                                                                           \
                    neg += 1;                                                                  \
            } else {                                                                           \
                if (fin == 0)                                                                  \
                    LO = HI = d;                                                               \
                fin += 1;                                                                      \
                S += d;                                                                        \
                Q += d * d;                                                                    \
                Z += d == 0;                                                                   \
                LO = d < LO ? d : LO;                                                          \
                HI = d > HI ? d : HI;                                                          \
            }                                                                                  \
        }                                                                                      \
        *r = (Moments){S, Q, Z, LO, HI, nan, pos, neg, fin};                                   \
    }                                                                                          \
                                                                                               \
    static double deviation_##T(const T *x, int64_t n, double mean)                            \
    {                                                                                          \
        double q = 0;                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                      \
            double d = (double)x[i];                                                           \
            if (isfinite(d))                                                                   \
                q += (d - mean) * (d - mean);                                                  \
        }                                                                                      \
        return q;                                                                              \
    }                                                                                          \
                                                                                               \
    VECTOR_CLONES static void bin_##T(const T *x, const int64_t *at, int64_t m, int64_t bins,  \
                                      double lo, double scale, int64_t *counts)                \
    {                                                                                          \
        int32_t idx[BLOCK];                                                                    \
        double ftop = (double)(bins - 1); /* clamped before the cast: no undefined behaviour */ \
        for (int64_t j0 = 0; j0 < m; j0 += BLOCK) {                                            \
            int64_t e = m - j0 < BLOCK ? m - j0 : BLOCK;                                       \
            if (at) {                                                                          \
                for (int64_t k = 0; k < e; k++) {                                              \
                    double f = ((double)x[at[j0 + k]] - lo) * scale;                           \
                    f = f < ftop ? f : ftop; /* NaN, Inf, huge: the top */                     \
                    idx[k] = (int32_t)(f > 0.0 ? f : 0.0); /* below lo: changed meanwhile */   \
                }                                                                              \
            } else {                                                                           \
                for (int64_t k = 0; k < e; k++) {                                              \
                    double f = ((double)x[j0 + k] - lo) * scale;                               \
                    f = f < ftop ? f : ftop;                                                   \
                    idx[k] = (int32_t)(f > 0.0 ? f : 0.0);                                     \
                }                                                                              \
            }                                                                                  \
            int64_t k = 0;                                                                     \
            for (; k + SPLIT <= e; k += SPLIT)                                                 \
                for (int c = 0; c < SPLIT; c++)                                                \
                    counts[c * bins + idx[k + c]]++;                                           \
            for (; k < e; k++)                                                                 \
                counts[idx[k]]++;                                                              \
        }                                                                                      \
    }                                                                                          \
                                                                                               \
    static int64_t bin_careful_##T(const T *x, int64_t n, int64_t bins, double lo,             \
                                   double scale, int64_t *counts)                              \
    {                                                                                          \
        int64_t have = 0;                                                                      \
        for (int64_t j = 0; j < n; j++) {                                                      \
            double d = (double)x[j];                                                           \
            if (!isfinite(d))                                                                  \
                continue;                                                                      \
            double f = (d - lo) * scale;                                                       \
            f = f < (double)(bins - 1) ? f : (double)(bins - 1);                               \
            counts[(int64_t)(f > 0.0 ? f : 0.0)]++;                                            \
            have++;                                                                            \
        }                                                                                      \
        return have;                                                                           \
    }

typedef double f64;
typedef float f32;
DEFINE_KERNELS(f32)
DEFINE_KERNELS(f64)

/* Counts of a sample scaled to `total`, integers summing to it: floors, then one more for the
 * largest remainders, ties to the lower bin (vizdebug.stats.scale_counts). */
static void scale_counts(double *row, int64_t bins, double have, double total, double *exact,
                         int64_t *order)
{
    double floors = 0;
    for (int64_t b = 0; b < bins; b++) {
        exact[b] = row[b] * total / have;
        row[b] = floor(exact[b]);
        floors += row[b];
        order[b] = b;
    }
    int64_t short_by = (int64_t)(total - floors);
    for (int64_t b = 1; b < bins; b++) { /* stable insertion sort by floor - exact, ascending */
        int64_t k = order[b];
        double key = row[k] - exact[k];
        int64_t j = b - 1;
        while (j >= 0 && row[order[j]] - exact[order[j]] > key) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = k;
    }
    for (int64_t j = 0; j < short_by && j < bins; j++)
        row[order[j]] += 1.0;
}

typedef struct {
    int64_t bins;
    int64_t *counts; /* SPLIT * bins */
    double *exact;   /* bins */
    int64_t *order;  /* bins */
    float *wide;     /* float16 and bfloat16 values widened (the largest such tensor) */
} Scratch;

static void one_row(const int64_t *spec, double *row, Scratch *w)
{
    const void *p = (const void *)(uintptr_t)spec[0];
    int64_t n = spec[1];
    int code = (int)spec[2];
    const int64_t *sample = (const int64_t *)(uintptr_t)spec[3];
    int64_t m = spec[4];
    int64_t bins = w->bins;
    double *hist = row + HEAD;
    int is64 = code == F64;
    const float *xf = (const float *)p;
    const double *xd = (const double *)p;
    Moments r;

    memset(row, 0, (size_t)(HEAD + bins) * sizeof(double));
    if (n == 0) {
        row[5] = row[6] = row[7] = row[8] = NAN;
        return;
    }
    if (code == F16 || code == BF16) {
        widen((const uint16_t *)p, n, code, w->wide);
        xf = w->wide;
    }
    if (is64)
        moments_f64(xd, n, &r);
    else
        moments_f32(xf, n, &r);
    int careful = !isfinite(r.sum);
    if (careful) {
        if (is64)
            careful_f64(xd, n, &r);
        else
            careful_f32(xf, n, &r);
    }
    row[0] = (double)n;
    row[1] = r.nan;
    row[2] = r.posinf;
    row[3] = r.neginf;
    row[4] = r.zeros;
    if (r.finite == 0) { /* nothing finite: NaN moments, zero norm, empty histogram */
        row[5] = row[6] = row[7] = row[8] = NAN;
        return;
    }
    double mean = r.sum / r.finite;
    double square = r.squares / r.finite;
    double var;
    if (isfinite(square) && square - mean * mean > 0.1 * square)
        var = square - mean * mean; /* well conditioned: at most a digit of sixteen lost */
    else
        var = (is64 ? deviation_f64(xd, n, mean) : deviation_f32(xf, n, mean)) / r.finite;
    double hlo = r.lo, hhi = r.hi;
    if (hlo == hhi) {
        hlo -= 0.5;
        hhi += 0.5;
    }
    row[5] = r.lo;
    row[6] = r.hi;
    row[7] = mean;
    row[8] = sqrt(var);
    row[9] = sqrt(r.squares);
    row[10] = hlo;
    row[11] = hhi;

    double scale = (double)bins / (hhi - hlo);
    int64_t have;
    memset(w->counts, 0, (size_t)(SPLIT * bins) * sizeof(int64_t));
    if (careful) { /* a rare tensor worth an exact histogram (a sample might miss its values) */
        sample = NULL;
        have = is64 ? bin_careful_f64(xd, n, bins, hlo, scale, w->counts)
                    : bin_careful_f32(xf, n, bins, hlo, scale, w->counts);
    } else {
        have = sample ? m : n;
        if (is64)
            bin_f64(xd, sample, have, bins, hlo, scale, w->counts);
        else
            bin_f32(xf, sample, have, bins, hlo, scale, w->counts);
    }
    for (int64_t b = 0; b < bins; b++) {
        int64_t c = 0;
        for (int s = 0; s < SPLIT; s++)
            c += w->counts[s * bins + b];
        hist[b] = (double)c;
    }
    if (sample && (double)have != r.finite)
        scale_counts(hist, bins, (double)have, r.finite, w->exact, w->order);
}

PyDoc_STRVAR(rows_doc,
             "rows(specs, out, count, bins)\n--\n\n"
             "Write the statistics rows of ``count`` tensors to the float64 matrix at address\n"
             "``out`` (``count`` x (12 + bins), C order). ``specs`` is a buffer of int64, six\n"
             "per tensor: data address, element count, dtype code (0 float32, 1 float64,\n"
             "2 float16, 3 bfloat16), address of the sorted int64 sample positions to bin\n"
             "(0: every element), the sample's length, and the index of an earlier tensor\n"
             "whose row to copy (-1: compute this one). Runs without the GIL.");

static PyObject *rows(PyObject *self, PyObject *args)
{
    Py_buffer specs;
    unsigned long long out;
    Py_ssize_t count, bins;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*Knn", &specs, &out, &count, &bins))
        return NULL;
    const int64_t *spec = (const int64_t *)specs.buf;
    const char *problem = NULL;
    if (bins < 1)
        problem = "bins must be at least 1";
    else if (count < 0 || specs.len != count * SPEC * (Py_ssize_t)sizeof(int64_t))
        problem = "specs must hold six int64 values per tensor";
    else if (count > 0 && out == 0)
        problem = "out must be the address of a float64 matrix";
    for (Py_ssize_t i = 0; problem == NULL && i < count; i++) {
        const int64_t *s = spec + i * SPEC;
        if (s[2] < F32 || s[2] > BF16)
            problem = "unknown dtype code";
        else if (s[1] < 0 || s[4] < 0 || (s[1] > 0 && s[0] == 0) || (s[3] != 0 && s[4] == 0))
            problem = "bad address, size or sample";
        else if (s[5] >= i || s[5] < -1)
            problem = "a copied row must come from an earlier tensor (or -1)";
    }
    if (problem != NULL) {
        PyBuffer_Release(&specs);
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    int64_t wide = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        const int64_t *s = spec + i * SPEC;
        if ((s[2] == F16 || s[2] == BF16) && s[1] > wide)
            wide = s[1];
    }
    Scratch w = {bins, NULL, NULL, NULL, NULL};
    w.counts = malloc((size_t)(SPLIT * bins) * sizeof(int64_t));
    w.exact = malloc((size_t)bins * sizeof(double));
    w.order = malloc((size_t)bins * sizeof(int64_t));
    w.wide = malloc((size_t)(wide > 0 ? wide : 1) * sizeof(float));
    if (!w.counts || !w.exact || !w.order || !w.wide) {
        free(w.counts);
        free(w.exact);
        free(w.order);
        free(w.wide);
        PyBuffer_Release(&specs);
        return PyErr_NoMemory();
    }
    double *matrix = (double *)(uintptr_t)out;
    size_t width = (size_t)(HEAD + bins);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        int64_t same = spec[i * SPEC + 5];
        if (same >= 0)
            memcpy(matrix + i * width, matrix + same * width, width * sizeof(double));
        else
            one_row(spec + i * SPEC, matrix + i * width, &w);
    }
    Py_END_ALLOW_THREADS
    free(w.counts);
    free(w.exact);
    free(w.order);
    free(w.wide);
    PyBuffer_Release(&specs);
    Py_RETURN_NONE;
}

/*
 * The NaN/Inf sentinel's check: whether any value of a tensor is not finite, read from the
 * exponent bits (all set: Inf or NaN) without converting a value and without allocating a
 * result, sixteen kilobytes at a time so a hit stops the scan early.
 */
#define NONFINITE_SCAN(NAME, T, MASK)                                                       \
    VECTOR_CLONES static int NAME(const T *x, int64_t n)                                    \
    {                                                                                       \
        typedef T vec __attribute__((vector_size(32)));                                     \
        enum { LANES = 32 / sizeof(T), STRIDE = 16384 / sizeof(T) };                        \
        const vec mask = (vec){0} + (T)(MASK);                                              \
        int64_t i = 0;                                                                      \
        while (i + LANES <= n) {                                                            \
            vec hit = {0};                                                                  \
            int64_t stop = n - i > STRIDE ? i + STRIDE : n;                                 \
            for (; i + LANES <= stop; i += LANES) {                                         \
                vec v;                                                                      \
                memcpy(&v, x + i, sizeof v);                                                \
                hit |= (vec)((v & mask) == mask);                                           \
            }                                                                               \
            for (int k = 0; k < LANES; k++)                                                 \
                if (hit[k])                                                                 \
                    return 1;                                                               \
        }                                                                                   \
        for (; i < n; i++)                                                                  \
            if ((x[i] & (T)(MASK)) == (T)(MASK))                                            \
                return 1;                                                                   \
        return 0;                                                                           \
    }

NONFINITE_SCAN(nonfinite_32, uint32_t, 0x7f800000u)
NONFINITE_SCAN(nonfinite_64, uint64_t, 0x7ff0000000000000ull)
NONFINITE_SCAN(nonfinite_f16, uint16_t, 0x7c00u)
NONFINITE_SCAN(nonfinite_bf16, uint16_t, 0x7f80u)

static int nonfinite_one(const void *p, int64_t n, int64_t code)
{
    switch (code) {
    case F32:
        return nonfinite_32((const uint32_t *)p, n);
    case F64:
        return nonfinite_64((const uint64_t *)p, n);
    case F16:
        return nonfinite_f16((const uint16_t *)p, n);
    default:
        return nonfinite_bf16((const uint16_t *)p, n);
    }
}

enum { RELEASE_BYTES = 1 << 20 }; /* a shorter scan keeps the GIL: releasing it costs more */

PyDoc_STRVAR(nonfinite_doc,
             "nonfinite(specs, count) -> int\n\n"
             "The index of the first of ``count`` tensors holding a NaN or an Inf, or -1.\n"
             "``specs`` is a buffer of int64, three per tensor: the address of its contiguous\n"
             "data, its element count and its dtype code (as for rows()). Scans of more than\n"
             "a megabyte run without the GIL.");

static PyObject *nonfinite(PyObject *self, PyObject *args)
{
    Py_buffer specs;
    Py_ssize_t count;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*n", &specs, &count))
        return NULL;
    const int64_t *spec = (const int64_t *)specs.buf;
    const char *problem = NULL;
    if (count < 0 || specs.len != count * 3 * (Py_ssize_t)sizeof(int64_t))
        problem = "specs must hold three int64 values per tensor";
    int64_t bytes = 0;
    for (Py_ssize_t i = 0; problem == NULL && i < count; i++) {
        const int64_t *s = spec + i * 3;
        if (s[2] < F32 || s[2] > BF16)
            problem = "unknown dtype code";
        else if (s[1] < 0 || (s[1] > 0 && s[0] == 0))
            problem = "bad address or size";
        else
            bytes += s[1] * (s[2] == F64 ? 8 : s[2] == F32 ? 4 : 2);
    }
    if (problem != NULL) {
        PyBuffer_Release(&specs);
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    Py_ssize_t found = -1;
    PyThreadState *released = bytes > RELEASE_BYTES ? PyEval_SaveThread() : NULL;
    for (Py_ssize_t i = 0; i < count && found < 0; i++) {
        const int64_t *s = spec + i * 3;
        if (s[1] > 0 && nonfinite_one((const void *)(uintptr_t)s[0], s[1], s[2]))
            found = i;
    }
    if (released != NULL)
        PyEval_RestoreThread(released);
    PyBuffer_Release(&specs);
    return PyLong_FromSsize_t(found);
}

static PyMethodDef methods[] = {
    {"rows", rows, METH_VARARGS, rows_doc},
    {"nonfinite", nonfinite, METH_VARARGS, nonfinite_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "vizdebug._rowkernel",
    "Statistics rows of CPU tensors in one call without the GIL (see vizdebug.torch.cpubatch).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rowkernel(void)
{
    return PyModule_Create(&module);
}
