/* eegz._core: the compiled inner loops of format 3 (spec/eegz-format.md, sections 5 and 6).
 *
 * - rANS with a 32-bit state and 16-bit words, integer tables only (spec 5.2);
 * - the context-adaptive residual coder over the tables of spec/tables/residual-v3.tsv (spec 5.3);
 * - integer LPC prediction and synthesis with residual-domain channel references, lossless and
 *   near-lossless (spec 5.4); LPC analysis (encoder only: any coefficients decode).
 *
 * Every function that decodes validates what it reads and raises ValueError on a damaged stream, with
 * every intermediate value bounded so that no arithmetic can overflow on hostile input. The heavy loops
 * run without the GIL, so a Python thread pool codes blocks on all cores.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_tables.h"

#define RANS_L (1u << 16)
#define RESIDUAL_PROB_BITS 12
#define CONTEXT_RATE 4            /* S <- S + floor((A - S) / 2^4) */
#define CONTEXT_LIMIT (1 << 26)   /* |e| is capped at this in the context update */
#define MAX_ORDER 32
#define MAX_FRAMES 8 /* LPC frames of a stream: equal parts, each with its own predictor */
#define MAX_COEF_SHIFT 24
#define COEF_LIMIT (1 << 20) /* |a_k| < 2^20: with |y| <= 2^26 every sum fits in 63 bits */
#define MAX_REFS 8
#define REF_SHIFT 12
#define VALUE_LIMIT ((int64_t)1 << 40) /* |residual| and |q| a stream may hold */

/* ------------------------------------------------------------------ rANS writer and reader */

typedef struct {
    uint16_t *buf; /* words are written downwards from the end */
    size_t cap, pos;
    uint32_t x;
} RansOut;

static int out_init(RansOut *o, size_t words) {
    o->cap = words + 4;
    o->buf = (uint16_t *)malloc(o->cap * sizeof(uint16_t));
    o->pos = o->cap;
    o->x = RANS_L;
    return o->buf != NULL;
}

static int out_grow(RansOut *o) {
    size_t used = o->cap - o->pos, cap = 2 * o->cap;
    uint16_t *b = (uint16_t *)malloc(cap * sizeof(uint16_t));
    if (!b) return 0;
    memcpy(b + cap - used, o->buf + o->pos, used * sizeof(uint16_t));
    free(o->buf);
    o->buf = b;
    o->pos = cap - used;
    o->cap = cap;
    return 1;
}

/* Push one symbol (start, freq) of a table of 2^bits; encoding runs backwards. */
static inline int rans_put(RansOut *o, uint32_t start, uint32_t freq, int bits) {
    uint32_t x = o->x;
    uint32_t x_max = ((RANS_L >> bits) << 16) * freq;
    if (x >= x_max) {
        if (o->pos == 0 && !out_grow(o)) return 0;
        o->buf[--o->pos] = (uint16_t)(x & 0xffff);
        x >>= 16;
    }
    o->x = ((x / freq) << bits) + (x % freq) + start;
    return 1;
}

static inline int rans_put_bits(RansOut *o, uint64_t value, int width) {
    /* width bits of value as uniform symbols, least significant chunk decoded first */
    int chunks = (width + 15) / 16;
    for (int i = chunks - 1; i >= 0; i--) {
        int w = (width - 16 * i) < 16 ? (width - 16 * i) : 16;
        if (!rans_put(o, (uint32_t)((value >> (16 * i)) & ((1u << w) - 1)), 1, w)) return 0;
    }
    return 1;
}

static PyObject *out_finish(RansOut *o) {
    if (o->pos < 2 && !out_grow(o)) { free(o->buf); return PyErr_NoMemory(); }
    o->buf[--o->pos] = (uint16_t)(o->x >> 16);
    o->buf[--o->pos] = (uint16_t)(o->x & 0xffff);
    size_t n = o->cap - o->pos;
    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(2 * n));
    if (result) {
        unsigned char *p = (unsigned char *)PyBytes_AS_STRING(result);
        for (size_t i = 0; i < n; i++) { /* little-endian words */
            p[2 * i] = (unsigned char)(o->buf[o->pos + i] & 0xff);
            p[2 * i + 1] = (unsigned char)(o->buf[o->pos + i] >> 8);
        }
    }
    free(o->buf);
    return result;
}

typedef struct {
    const unsigned char *p;
    size_t n, pos; /* in words */
    uint32_t x;
    int bad;
} RansIn;

static void in_init(RansIn *r, const unsigned char *data, size_t bytes) {
    r->p = data;
    r->n = bytes / 2;
    r->bad = (bytes % 2) != 0 || r->n < 2;
    r->pos = 2;
    r->x = r->bad ? RANS_L : ((uint32_t)data[0] | ((uint32_t)data[1] << 8) | ((uint32_t)data[2] << 16) | ((uint32_t)data[3] << 24));
    if (!r->bad && r->x < RANS_L) r->bad = 1;
}

static inline uint32_t in_slot(const RansIn *r, int bits) { return r->x & ((1u << bits) - 1); }

static inline void in_refill(RansIn *r, uint32_t x) {
    /* branch-free: the refill is taken about one step in three, too often to predict */
    uint32_t need = x < RANS_L;
    size_t pos = r->pos;
    uint32_t word = pos < r->n ? ((uint32_t)r->p[2 * pos] | ((uint32_t)r->p[2 * pos + 1] << 8)) : 0;
    r->bad |= (int)(need & (pos >= r->n));
    r->x = need ? ((x << 16) | word) : x;
    r->pos = pos + need;
}

static inline void in_advance(RansIn *r, uint32_t start, uint32_t freq, int bits) {
    in_refill(r, freq * (r->x >> bits) + (r->x & ((1u << bits) - 1)) - start);
}

/* A uniform symbol of `bits` <= 16: the slot itself. */
static inline uint32_t in_uniform(RansIn *r, int bits) {
    uint32_t v = r->x & ((1u << bits) - 1);
    in_refill(r, r->x >> bits);
    return v;
}

static inline uint64_t in_bits(RansIn *r, int width) {
    uint64_t v = 0;
    int chunks = (width + 15) / 16;
    for (int i = 0; i < chunks; i++) {
        int w = (width - 16 * i) < 16 ? (width - 16 * i) : 16;
        uint32_t s = in_slot(r, w);
        in_advance(r, s, 1, w);
        v |= (uint64_t)s << (16 * i);
    }
    return v;
}

/* A stream is whole when decoding ends on the encoder's initial state with every word read. */
static int in_complete(const RansIn *r) { return !r->bad && r->x == RANS_L && r->pos == r->n; }

/* ------------------------------------------------------------------ residual tables (spec 5.3) */

typedef struct {
    uint16_t start[MAX_SYMBOLS + 1];
    uint8_t lookup[1 << RESIDUAL_PROB_BITS];
    uint8_t size, shift;
} ClassTable;

static ClassTable TABLES[N_FAMILIES][N_CLASSES];
static double MIN_SYMBOL_BITS; /* the cost of the most probable symbol of any table: bounds n by the bytes */
static float COST[N_FAMILIES][N_CLASSES][MAX_SYMBOLS]; /* bits of each symbol, for choosing a family */

static void build_tables(void) {
    uint32_t top = 1;
    for (int f = 0; f < N_FAMILIES; f++)
        for (int c = 0; c < N_CLASSES; c++) {
            ClassTable *t = &TABLES[f][c];
            t->size = TABLE_SIZE[f][c];
            t->shift = TABLE_SHIFT[f][c];
            uint32_t acc = 0;
            for (int s = 0; s < t->size; s++) {
                t->start[s] = (uint16_t)acc;
                for (uint32_t k = 0; k < TABLE_FREQ[f][c][s]; k++) t->lookup[acc + k] = (uint8_t)s;
                COST[f][c][s] = (float)(RESIDUAL_PROB_BITS - log2((double)TABLE_FREQ[f][c][s]));
                if (TABLE_FREQ[f][c][s] > top) top = TABLE_FREQ[f][c][s];
                acc += TABLE_FREQ[f][c][s];
            }
            t->start[t->size] = (uint16_t)acc;
        }
    MIN_SYMBOL_BITS = RESIDUAL_PROB_BITS - log2((double)top);
}

/* Most symbols `bytes` of rANS words can hold when no symbol costs less than min_bits. */
static uint64_t max_symbols(size_t bytes, double min_bits) {
    double n = (8.0 * (double)bytes + 32.0) / (min_bits > 1e-9 ? min_bits : 1e-9) + 1.0;
    return n > 1e18 ? (uint64_t)1e18 : (uint64_t)n;
}

static inline int class_of(int64_t s) {
    if (s < 4) return (int)s;
    int b = 63 - __builtin_clzll((unsigned long long)s);
    int c = 4 * (b - 1) + (int)((s >> (b - 2)) & 3);
    return c < N_CLASSES ? c : N_CLASSES - 1;
}

/* S <- S + floor((min(|e|, LIMIT) * 16 - S) / 16). GCC and Clang define >> of a negative signed value as
   an arithmetic shift, which is the floor division the spec asks for. */
static inline int64_t context_update(int64_t s, int64_t e) {
    int64_t a = e < 0 ? -e : e;
    a = a > CONTEXT_LIMIT ? CONTEXT_LIMIT : a;
    return s + (((a << 4) - s) >> CONTEXT_RATE);
}

static inline uint64_t zigzag(int64_t e) { return e >= 0 ? (uint64_t)e << 1 : (((uint64_t)(-(e + 1))) << 1) | 1; }
static inline int64_t unzigzag(uint64_t u) { return (u & 1) ? -(int64_t)(u >> 1) - 1 : (int64_t)(u >> 1); }

static int bit_length(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }

/* ------------------------------------------------------------------ argument helpers */

typedef struct { Py_buffer view; int held; } Buf;

static int get_buf(PyObject *obj, Buf *b, Py_ssize_t item, const char *what) {
    b->held = 0;
    if (PyObject_GetBuffer(obj, &b->view, PyBUF_C_CONTIGUOUS) < 0) return 0;
    b->held = 1;
    if (item > 1 && b->view.len % item) {
        PyErr_Format(PyExc_ValueError, "%s: buffer length is not a multiple of %zd", what, item);
        return 0;
    }
    return 1;
}

static void drop_buf(Buf *b) { if (b->held) PyBuffer_Release(&b->view); b->held = 0; }

static PyObject *new_array(Py_ssize_t bytes, void **data) {
    PyObject *o = PyBytes_FromStringAndSize(NULL, bytes);
    if (o) *data = PyBytes_AS_STRING(o);
    return o;
}

/* ------------------------------------------------------------------ residual coder kernels (spec 5.3) */

static int residual_encode(RansOut *o, const int64_t *e, Py_ssize_t n, int family, int64_t s0) {
    uint8_t *cls = (uint8_t *)malloc(n ? (size_t)n : 1);
    if (!cls) return 0;
    int64_t s = s0;
    for (Py_ssize_t t = 0; t < n; t++) { cls[t] = (uint8_t)class_of(s); s = context_update(s, e[t]); }
    int ok = 1;
    for (Py_ssize_t t = n - 1; t >= 0 && ok; t--) {
        const ClassTable *tb = &TABLES[family][cls[t]];
        uint64_t u = zigzag(e[t]);
        uint64_t h = u >> tb->shift;
        int esc = tb->size - 1;
        if (tb->shift) ok = rans_put_bits(o, u & (((uint64_t)1 << tb->shift) - 1), tb->shift);
        if (h >= (uint64_t)esc) {
            uint64_t v = h - (uint64_t)esc;
            int len = bit_length(v);
            ok = ok && rans_put_bits(o, v, len) && rans_put(o, (uint32_t)len, 1, 7);
            h = (uint64_t)esc;
        }
        ok = ok && rans_put(o, tb->start[h], (uint32_t)(tb->start[h + 1] - tb->start[h]), RESIDUAL_PROB_BITS);
    }
    free(cls);
    return ok;
}

/* 0 on success, -1 when the words are not a valid stream of n residuals. */
static int residual_decode(const unsigned char *data, size_t bytes, int64_t *out, Py_ssize_t n, int family, int64_t s0) {
    if ((uint64_t)n > max_symbols(bytes, MIN_SYMBOL_BITS)) return -1;
    RansIn r;
    in_init(&r, data, bytes);
    const ClassTable *tables = TABLES[family];
    int64_t s = s0;
    for (Py_ssize_t t = 0; t < n; t++) {
        const ClassTable *tb = &tables[class_of(s)];
        uint32_t slot = r.x & ((1u << RESIDUAL_PROB_BITS) - 1);
        uint32_t sym = tb->lookup[slot];
        uint32_t start = tb->start[sym];
        in_refill(&r, (uint32_t)(tb->start[sym + 1] - start) * (r.x >> RESIDUAL_PROB_BITS) + slot - start);
        uint64_t h = sym;
        int shift = tb->shift;
        if (__builtin_expect(sym == (uint32_t)(tb->size - 1), 0)) {
            uint32_t len = in_uniform(&r, 7);
            if (len > 41) return -1;
            h += in_bits(&r, (int)len);
            if (h > ((uint64_t)1 << 42) >> shift) return -1;
        }
        uint64_t low = shift <= 16 ? in_uniform(&r, shift) : in_bits(&r, shift);
        int64_t e = unzigzag((h << shift) | low);
        if (e > VALUE_LIMIT || e < -VALUE_LIMIT) return -1;
        out[t] = e;
        s = context_update(s, e);
    }
    return in_complete(&r) ? 0 : -1;
}

/* Estimated bits of each family (family < 0), or of one family, from the table costs. */
static void residual_cost(const int64_t *e, Py_ssize_t n, int64_t s0, int family, double *cost) {
    int first = family < 0 ? 0 : family, last = family < 0 ? N_FAMILIES - 1 : family;
    for (int f = first; f <= last; f++) cost[f] = 0;
    int64_t s = s0;
    for (Py_ssize_t t = 0; t < n; t++) {
        int c = class_of(s);
        uint64_t u = zigzag(e[t]);
        for (int f = first; f <= last; f++) {
            const ClassTable *tb = &TABLES[f][c];
            uint64_t h = u >> tb->shift;
            int esc = tb->size - 1;
            cost[f] += tb->shift + (h >= (uint64_t)esc ? COST[f][c][esc] + 7 + bit_length(h - (uint64_t)esc) : COST[f][c][h]);
        }
        s = context_update(s, e[t]);
    }
}

/* 16 × the mean |e| of the first 16 values: the writer's context start (any value decodes). */
static int64_t context_start(const int64_t *e, Py_ssize_t n) {
    Py_ssize_t m = n < 16 ? n : 16;
    int64_t sum = 0;
    for (Py_ssize_t t = 0; t < m; t++) sum += e[t] < 0 ? -e[t] : e[t];
    int64_t s = m ? (16 * sum) / m : 0;
    return s > ((int64_t)1 << 30) ? ((int64_t)1 << 30) : s;
}

/* ------------------------------------------------------------------ prediction kernels (spec 5.4) */

/* sum_k a_k y[t-1-k] with h = &y[t-1]: four independent accumulators, the newest sample added last so
   that the recursion's critical path is one multiply and a few adds (1.5-2x faster than one sum). */
static inline int64_t lpc_sum(const int32_t *c, int order, const int64_t *h) {
    int64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int k = order - 1;
    for (; k >= 4; k -= 4) {
        a0 += (int64_t)c[k] * h[-k];
        a1 += (int64_t)c[k - 1] * h[-k + 1];
        a2 += (int64_t)c[k - 2] * h[-k + 2];
        a3 += (int64_t)c[k - 3] * h[-k + 3];
    }
    for (; k >= 1; k--) a0 += (int64_t)c[k] * h[-k];
    return (a1 + a2) + (a3 + a0) + (int64_t)c[0] * h[0];
}

typedef struct { const int32_t *coefs; int order, shift; } Predictor;

/* pred_t: 0 at t = 0, y[t-1] while t < order, else (sum a_k y[t-k] + round) >> shift (floor; GCC and
   Clang shift negative values arithmetically). */
static inline int64_t predict_at(const Predictor *p, const int64_t *y, Py_ssize_t t) {
    if (t == 0) return 0;
    if (t < p->order) return y[t - 1];
    if (p->order == 0) return 0;
    int64_t round = p->shift ? ((int64_t)1 << (p->shift - 1)) : 0;
    return (lpc_sum(p->coefs, p->order, y + t - 1) + round) >> p->shift;
}

static int predictor_ok(const Predictor *p) {
    if (p->order < 0 || p->order > MAX_ORDER || p->shift < 0 || p->shift > MAX_COEF_SHIFT) return 0;
    for (int k = 0; k < p->order; k++) if (p->coefs[k] <= -COEF_LIMIT || p->coefs[k] >= COEF_LIMIT) return 0;
    return 1;
}

/* spatial_t = (sum_j w_j r_j[t] + 2^(REF_SHIFT-1)) >> REF_SHIFT. */
static void spatial_sum(const int64_t *const *refs, const int32_t *w, int m, Py_ssize_t n, int64_t *out) {
    for (Py_ssize_t t = 0; t < n; t++) out[t] = (int64_t)1 << (REF_SHIFT - 1);
    for (int j = 0; j < m; j++)
        for (Py_ssize_t t = 0; t < n; t++) out[t] += (int64_t)w[j] * refs[j][t];
    for (Py_ssize_t t = 0; t < n; t++) out[t] >>= REF_SHIFT;
}

/* Encoder: q (entropy coded) and r' (the reconstructed residual later streams reference); 0 when a value
   leaves the range a decoder accepts (the caller keeps the stream raw). */
static inline Py_ssize_t frame_start(Py_ssize_t n, int frames, int j) { return (Py_ssize_t)(((int64_t)n * j) / frames); }

static int predict_loop(const int64_t *z, Py_ssize_t n, const Predictor *frames, int nframes, const int64_t *sp,
                        int64_t k, int64_t *q, int64_t *r, int64_t *y) {
    int64_t step = 2 * k + 1;
    for (int j = 0; j < nframes; j++)
    for (Py_ssize_t t = frame_start(n, nframes, j), end = frame_start(n, nframes, j + 1); t < end; t++) {
        int64_t pred = predict_at(&frames[j], k ? y : z, t);
        int64_t s = sp ? sp[t] : 0;
        int64_t d = z[t] - pred - s;
        int64_t qt = k ? (d >= 0 ? (d + k) / step : -((-d + k) / step)) : d;
        int64_t rt = s + qt * step;
        q[t] = qt;
        r[t] = rt;
        y[t] = pred + rt;
        if (qt > VALUE_LIMIT || qt < -VALUE_LIMIT || rt > VALUE_LIMIT || rt < -VALUE_LIMIT
            || y[t] > VALUE_LIMIT || y[t] < -VALUE_LIMIT) return 0;
    }
    return 1;
}

/* Decoder: y = z' and r' from q; 0 when a value leaves [zlo, zhi] or the residual range. */
static int synth_loop(const int64_t *q, Py_ssize_t n, const Predictor *frames, int nframes, const int64_t *sp,
                      int64_t k, int64_t zlo, int64_t zhi, int64_t *y, int64_t *r) {
    int64_t step = 2 * k + 1, qmax = VALUE_LIMIT / step;
    for (int j = 0; j < nframes; j++)
    for (Py_ssize_t t = frame_start(n, nframes, j), end = frame_start(n, nframes, j + 1); t < end; t++) {
        int64_t qt = q[t], s = sp ? sp[t] : 0;
        if (qt > qmax || qt < -qmax || s > VALUE_LIMIT || s < -VALUE_LIMIT) return 0;
        int64_t rt = s + qt * step;
        int64_t yt = predict_at(&frames[j], y, t) + rt;
        if (rt > VALUE_LIMIT || rt < -VALUE_LIMIT || yt < zlo || yt > zhi) return 0;
        r[t] = rt;
        y[t] = yt;
    }
    return 1;
}

/* ------------------------------------------------------------------ exact streams (spec 5.4) */

/* [(shift, int32 coefficients), ...] -> predictors (buffers held in bufs until drop_frames). */
static int get_frames(PyObject *list, Predictor *frames, Buf *bufs, int *nframes) {
    *nframes = 0;
    if (!PyList_Check(list) || PyList_GET_SIZE(list) < 1 || PyList_GET_SIZE(list) > MAX_FRAMES) {
        PyErr_SetString(PyExc_ValueError, "1 to 8 predictor frames are needed");
        return 0;
    }
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(list); j++) {
        PyObject *item = PyList_GET_ITEM(list, j), *coefs;
        int shift;
        if (!PyArg_ParseTuple(item, "iO", &shift, &coefs)) return 0;
        if (!get_buf(coefs, &bufs[j], 4, "coefficients")) return 0;
        (*nframes)++;
        frames[j].coefs = (const int32_t *)bufs[j].view.buf;
        frames[j].order = (int)(bufs[j].view.len / 4);
        frames[j].shift = shift;
        if (!predictor_ok(&frames[j])) { PyErr_SetString(PyExc_ValueError, "bad predictor"); return 0; }
    }
    return 1;
}

static void drop_frames(Buf *bufs) { for (int j = 0; j < MAX_FRAMES; j++) drop_buf(&bufs[j]); }

#define HEAD_BYTES 21 /* u8 method, u32 n, u32 g, i64 m, u32 k */

static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put_u64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get_u32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static uint64_t get_u64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }

/* Coefficients as `bits`-bit two's complement, packed LSB-first. */
static void pack_coefs(const int32_t *c, int order, int bits, unsigned char *out) {
    size_t bytes = ((size_t)order * bits + 7) / 8;
    memset(out, 0, bytes);
    size_t pos = 0;
    for (int k = 0; k < order; k++)
        for (int b = 0; b < bits; b++, pos++)
            if (((uint32_t)c[k] >> b) & 1) out[pos / 8] |= (unsigned char)(1 << (pos % 8));
}

static void unpack_coefs(const unsigned char *in, int order, int bits, int32_t *c) {
    size_t pos = 0;
    for (int k = 0; k < order; k++) {
        uint32_t u = 0;
        for (int b = 0; b < bits; b++, pos++) u |= (uint32_t)((in[pos / 8] >> (pos % 8)) & 1) << b;
        c[k] = (u >> (bits - 1)) ? (int32_t)(u | ~(((uint32_t)1 << bits) - 1)) : (int32_t)u;
    }
}

static int get_refs(PyObject *list, Py_ssize_t n, Buf *bufs, const int64_t **ptrs, int *m) {
    *m = 0;
    if (list == Py_None) return 1;
    if (!PyList_Check(list) || PyList_GET_SIZE(list) > MAX_REFS) {
        PyErr_SetString(PyExc_ValueError, "bad channel references");
        return 0;
    }
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(list); j++) {
        if (!get_buf(PyList_GET_ITEM(list, j), &bufs[j], 8, "reference")) return 0;
        (*m)++;
        if (bufs[j].view.len != n * 8) { PyErr_SetString(PyExc_ValueError, "reference of another length"); return 0; }
        ptrs[j] = (const int64_t *)bufs[j].view.buf;
    }
    return 1;
}

/* exact_encode(z, g, m, k, frames [(shift, coefs i32)], coef_bits, refs [positions], weights [ints],
   ref residuals [r']) -> (method-0 stream, r') or None when the stream must be kept raw. */
static PyObject *exact_encode(PyObject *self, PyObject *args) {
    PyObject *z_obj, *frame_obj, *pos_obj, *w_obj, *ref_obj;
    unsigned long g;
    long long m, k;
    int coef_bits, nframes = 0;
    if (!PyArg_ParseTuple(args, "OkLLOiOOO", &z_obj, &g, &m, &k, &frame_obj, &coef_bits, &pos_obj, &w_obj,
                          &ref_obj)) return NULL;
    Buf zb, fb[MAX_FRAMES], refs[MAX_REFS];
    zb.held = 0;
    for (int j = 0; j < MAX_REFS; j++) refs[j].held = 0;
    for (int j = 0; j < MAX_FRAMES; j++) fb[j].held = 0;
    const int64_t *ref_ptr[MAX_REFS];
    int32_t w[MAX_REFS], pos[MAX_REFS];
    int nrefs = 0;
    PyObject *result = NULL;
    Predictor frames[MAX_FRAMES];
    if (!get_buf(z_obj, &zb, 8, "samples") || !get_frames(frame_obj, frames, fb, &nframes)) goto done;
    Py_ssize_t n = zb.view.len / 8;
    if (!get_refs(ref_obj, n, refs, ref_ptr, &nrefs)) goto done;
    if (!PyList_Check(pos_obj) || !PyList_Check(w_obj) || PyList_GET_SIZE(pos_obj) != nrefs
        || PyList_GET_SIZE(w_obj) != nrefs) { PyErr_SetString(PyExc_ValueError, "bad channel references"); goto done; }
    for (int j = 0; j < nrefs; j++) {
        pos[j] = (int32_t)PyLong_AsLong(PyList_GET_ITEM(pos_obj, j));
        w[j] = (int32_t)PyLong_AsLong(PyList_GET_ITEM(w_obj, j));
        if (PyErr_Occurred() || pos[j] < 0 || pos[j] > 65535 || w[j] < -32768 || w[j] > 32767) {
            PyErr_SetString(PyExc_ValueError, "bad channel references"); goto done;
        }
    }
    if (coef_bits < 2 || coef_bits > 21 || g < 1 || g > 0xffffffffUL || k < 0 || k > 0xffffffffLL) {
        PyErr_SetString(PyExc_ValueError, "bad stream parameters"); goto done;
    }
    for (int j = 0; j < nframes; j++)
        for (int c = 0; c < frames[j].order; c++)
            if (frames[j].coefs[c] >= (1 << (coef_bits - 1)) || frames[j].coefs[c] < -(1 << (coef_bits - 1))) {
                PyErr_SetString(PyExc_ValueError, "a coefficient wider than its precision"); goto done;
            }
    int64_t *buf = (int64_t *)malloc((size_t)(n ? n : 1) * 8 * 4);
    if (!buf) { PyErr_NoMemory(); goto done; }
    int64_t *q = buf, *r = buf + n, *y = buf + 2 * n, *sp = buf + 3 * n;
    int ok, family = 0;
    int64_t s0 = 0;
    RansOut o;
    o.buf = NULL;
    Py_BEGIN_ALLOW_THREADS
    if (nrefs) spatial_sum(ref_ptr, w, nrefs, n, sp);
    ok = predict_loop((const int64_t *)zb.view.buf, n, frames, nframes, nrefs ? sp : NULL, k, q, r, y);
    if (ok) {
        double cost[N_FAMILIES];
        s0 = context_start(q, n);
        residual_cost(q, n, s0, -1, cost);
        for (int f = 1; f < N_FAMILIES; f++) if (cost[f] < cost[family]) family = f;
        ok = out_init(&o, (size_t)n + 16) && residual_encode(&o, q, n, family, s0) ? 1 : -1;
    }
    Py_END_ALLOW_THREADS
    if (ok == 1) {
        size_t words = o.cap - o.pos + 2, coef_bytes = 0;
        for (int j = 0; j < nframes; j++) coef_bytes += 3 + ((size_t)frames[j].order * coef_bits + 7) / 8;
        size_t size = HEAD_BYTES + 1 + coef_bytes + 1 + 4 * (size_t)nrefs + 5 + 2 * words;
        unsigned char *s;
        PyObject *stream = new_array((Py_ssize_t)size, (void **)&s);
        PyObject *words_obj = stream ? out_finish(&o) : NULL;
        o.buf = NULL;
        PyObject *r_obj = words_obj ? PyBytes_FromStringAndSize((const char *)r, n * 8) : NULL;
        if (r_obj) {
            s[0] = 0;
            put_u32(s + 1, (uint32_t)n);
            put_u32(s + 5, (uint32_t)g);
            put_u64(s + 9, (uint64_t)m);
            put_u32(s + 17, (uint32_t)k);
            unsigned char *c = s + HEAD_BYTES;
            *c++ = (unsigned char)nframes;
            for (int j = 0; j < nframes; j++) {
                c[0] = (unsigned char)frames[j].order; c[1] = (unsigned char)frames[j].shift; c[2] = (unsigned char)coef_bits;
                pack_coefs(frames[j].coefs, frames[j].order, coef_bits, c + 3);
                c += 3 + ((size_t)frames[j].order * coef_bits + 7) / 8;
            }
            *c++ = (unsigned char)nrefs;
            for (int j = 0; j < nrefs; j++) {
                c[0] = (unsigned char)(pos[j] & 0xff); c[1] = (unsigned char)(pos[j] >> 8);
                c[2] = (unsigned char)(w[j] & 0xff); c[3] = (unsigned char)((uint32_t)w[j] >> 8);
                c += 4;
            }
            *c++ = (unsigned char)family;
            put_u32(c, (uint32_t)s0);
            c += 4;
            memcpy(c, PyBytes_AS_STRING(words_obj), (size_t)PyBytes_GET_SIZE(words_obj));
            result = PyTuple_Pack(2, stream, r_obj);
        }
        Py_XDECREF(stream); Py_XDECREF(words_obj); Py_XDECREF(r_obj);
    } else if (ok == -1) {
        PyErr_NoMemory();
    } else {
        result = Py_None;
        Py_INCREF(result);
    }
    if (o.buf) free(o.buf);
    free(buf);
done:
    drop_buf(&zb);
    drop_frames(fb);
    for (int j = 0; j < MAX_REFS; j++) drop_buf(&refs[j]);
    return result;
}

static PyObject *damaged(const char *why) {
    PyErr_Format(PyExc_ValueError, "damaged exact stream (%s)", why);
    return NULL;
}

/* exact_decode(stream, n, lo, hi, lossless, earlier r' [bytes or None by position])
   -> (samples int32, r' int64) of a method-0 stream, every field validated before use. */
static PyObject *exact_decode(PyObject *self, PyObject *args) {
    PyObject *data_obj, *recon;
    Py_ssize_t n;
    long long lo, hi;
    int lossless;
    if (!PyArg_ParseTuple(args, "OnLLpO", &data_obj, &n, &lo, &hi, &lossless, &recon)) return NULL;
    if (!PyList_Check(recon) || lo > hi || lo < -(1LL << 31) || hi >= (1LL << 31) || n < 0) {
        PyErr_SetString(PyExc_ValueError, "bad decoding arguments");
        return NULL;
    }
    Buf db;
    if (!get_buf(data_obj, &db, 1, "stream")) { drop_buf(&db); return NULL; }
    const unsigned char *s = (const unsigned char *)db.view.buf;
    size_t len = (size_t)db.view.len;
    PyObject *result = NULL;
    Buf refs[MAX_REFS];
    for (int j = 0; j < MAX_REFS; j++) refs[j].held = 0;
    int64_t *buf = NULL;
    if (len < HEAD_BYTES + 1) { damaged("shorter than its header"); goto done; }
    if (s[0] != 0) { damaged("not a predicted stream"); goto done; }
    int64_t g = get_u32(s + 5), m = (int64_t)get_u64(s + 9), k = get_u32(s + 17);
    if ((Py_ssize_t)get_u32(s + 1) != n) { damaged("sample count differs from the block's"); goto done; }
    if (g < 1 || g > hi - lo + 1 || m < lo - g || m > hi + g || k > hi - lo || (lossless && k)) {
        damaged("step, offset or bound out of range"); goto done;
    }
    Predictor frames[MAX_FRAMES];
    int32_t coefs[MAX_FRAMES][MAX_ORDER];
    const unsigned char *c = s + HEAD_BYTES;
    int nframes = *c++;
    if (nframes < 1 || nframes > MAX_FRAMES) { damaged("predictor frame count out of range"); goto done; }
    for (int j = 0; j < nframes; j++) {
        if ((size_t)(c - s) + 3 > len) { damaged("truncated header"); goto done; }
        int bits = c[2];
        frames[j].order = c[0]; frames[j].shift = c[1]; frames[j].coefs = coefs[j];
        if (frames[j].order > MAX_ORDER || bits < 2 || bits > 21) { damaged("predictor order or precision out of range"); goto done; }
        size_t coef_bytes = ((size_t)frames[j].order * bits + 7) / 8;
        if ((size_t)(c - s) + 3 + coef_bytes > len) { damaged("truncated header"); goto done; }
        unpack_coefs(c + 3, frames[j].order, bits, coefs[j]);
        if (!predictor_ok(&frames[j])) { damaged("predictor out of range"); goto done; }
        c += 3 + coef_bytes;
    }
    if ((size_t)(c - s) + 1 > len) { damaged("truncated header"); goto done; }
    int nrefs = *c++;
    if (nrefs > MAX_REFS || len < (size_t)(c - s) + 4 * (size_t)nrefs + 5) { damaged("truncated references"); goto done; }
    const int64_t *ref_ptr[MAX_REFS];
    int32_t w[MAX_REFS];
    for (int j = 0; j < nrefs; j++, c += 4) {
        Py_ssize_t position = c[0] | (c[1] << 8);
        w[j] = (int16_t)(uint16_t)(c[2] | (c[3] << 8));
        PyObject *item = position < PyList_GET_SIZE(recon) ? PyList_GET_ITEM(recon, position) : Py_None;
        if (item == Py_None) { damaged("a reference to a stream that is not an earlier predicted stream"); goto done; }
        if (!get_buf(item, &refs[j], 8, "reference")) goto done;
        if (refs[j].view.len != n * 8) { damaged("a reference of another length"); goto done; }
        ref_ptr[j] = (const int64_t *)refs[j].view.buf;
    }
    int family = c[0];
    int64_t s0 = get_u32(c + 1);
    c += 5;
    if (family >= N_FAMILIES || s0 > ((int64_t)CONTEXT_LIMIT << 4)) { damaged("bad residual coder state"); goto done; }
    if ((uint64_t)n > max_symbols(len - (size_t)(c - s), MIN_SYMBOL_BITS)) { damaged("more samples than its bytes hold"); goto done; }
    buf = (int64_t *)malloc((size_t)(n ? n : 1) * 8 * 3);
    int32_t *x;
    PyObject *x_obj = new_array(n * 4, (void **)&x);
    PyObject *r_obj = NULL;
    int64_t *r;
    if (x_obj) r_obj = new_array(n * 8, (void **)&r);
    if (!buf || !x_obj || !r_obj) { Py_XDECREF(x_obj); Py_XDECREF(r_obj); if (!PyErr_Occurred()) PyErr_NoMemory(); goto done; }
    int64_t zlo = -((m - lo) / g + ((m - lo) % g < 0)) - k; /* ceil((lo - m) / g) - k, floor division */
    int64_t zhi = (hi - m) / g - ((hi - m) % g < 0) + k;
    int status;
    Py_BEGIN_ALLOW_THREADS
    int64_t *q = buf, *y = buf + n, *sp = buf + 2 * n;
    status = residual_decode(c, len - (size_t)(c - s), q, n, family, s0);
    if (status == 0) {
        if (nrefs) spatial_sum(ref_ptr, w, nrefs, n, sp);
        status = synth_loop(q, n, frames, nframes, nrefs ? sp : NULL, k, zlo, zhi, y, r) ? 0 : -2;
    }
    if (status == 0)
        for (Py_ssize_t t = 0; t < n; t++) {
            int64_t v = g * y[t] + m;
            x[t] = (int32_t)(v < lo ? lo : (v > hi ? hi : v));
        }
    Py_END_ALLOW_THREADS
    if (status == 0) result = PyTuple_Pack(2, x_obj, r_obj);
    else damaged(status == -1 ? "residuals" : "a value outside its range");
    Py_DECREF(x_obj); Py_DECREF(r_obj);
done:
    free(buf);
    drop_buf(&db);
    for (int j = 0; j < MAX_REFS; j++) drop_buf(&refs[j]);
    return result;
}

/* ------------------------------------------------------------------ thin wrappers (encoder side, tests) */

static PyObject *encode_residuals(PyObject *self, PyObject *args) {
    PyObject *obj;
    int family;
    long long s0;
    if (!PyArg_ParseTuple(args, "OiL", &obj, &family, &s0)) return NULL;
    if (family < 0 || family >= N_FAMILIES || s0 < 0 || s0 > ((long long)CONTEXT_LIMIT << 4)) {
        PyErr_SetString(PyExc_ValueError, "bad residual family or context start");
        return NULL;
    }
    Buf b;
    if (!get_buf(obj, &b, 8, "residuals")) { drop_buf(&b); return NULL; }
    Py_ssize_t n = b.view.len / 8;
    RansOut o;
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = out_init(&o, (size_t)n + 16) && residual_encode(&o, (const int64_t *)b.view.buf, n, family, s0);
    Py_END_ALLOW_THREADS
    drop_buf(&b);
    if (!ok) { free(o.buf); return PyErr_NoMemory(); }
    return out_finish(&o);
}

static PyObject *decode_residuals(PyObject *self, PyObject *args) {
    PyObject *obj;
    Py_ssize_t n;
    int family;
    long long s0;
    if (!PyArg_ParseTuple(args, "OniL", &obj, &n, &family, &s0)) return NULL;
    if (family < 0 || family >= N_FAMILIES || s0 < 0 || s0 > ((long long)CONTEXT_LIMIT << 4) || n < 0)
        return damaged("bad family, context or length");
    Buf b;
    if (!get_buf(obj, &b, 1, "stream")) { drop_buf(&b); return NULL; }
    int64_t *out;
    PyObject *result = new_array(n * 8, (void **)&out);
    int status = -1;
    if (result) {
        Py_BEGIN_ALLOW_THREADS
        status = residual_decode((const unsigned char *)b.view.buf, (size_t)b.view.len, out, n, family, s0);
        Py_END_ALLOW_THREADS
    }
    drop_buf(&b);
    if (result && status) { Py_DECREF(result); return damaged("residuals"); }
    return result;
}

static PyObject *residual_costs(PyObject *self, PyObject *args) {
    PyObject *obj;
    int family = -1;
    if (!PyArg_ParseTuple(args, "O|i", &obj, &family)) return NULL;
    if (family >= N_FAMILIES) { PyErr_SetString(PyExc_ValueError, "bad family"); return NULL; }
    Buf b;
    if (!get_buf(obj, &b, 8, "residuals")) { drop_buf(&b); return NULL; }
    const int64_t *e = (const int64_t *)b.view.buf;
    Py_ssize_t n = b.view.len / 8;
    double cost[N_FAMILIES] = {0};
    Py_BEGIN_ALLOW_THREADS
    residual_cost(e, n, context_start(e, n), family, cost);
    Py_END_ALLOW_THREADS
    drop_buf(&b);
    if (family >= 0) return PyFloat_FromDouble(cost[family]);
    PyObject *t = PyTuple_New(N_FAMILIES);
    for (int f = 0; f < N_FAMILIES; f++) PyTuple_SET_ITEM(t, f, PyFloat_FromDouble(cost[f]));
    return t;
}

/* lossless LPC residual of z with predictor frames [(shift, coefs)]; None on overflow */
static PyObject *lpc_residual(PyObject *self, PyObject *args) {
    PyObject *z_obj, *frame_obj;
    if (!PyArg_ParseTuple(args, "OO", &z_obj, &frame_obj)) return NULL;
    Buf zb, fb[MAX_FRAMES];
    zb.held = 0;
    for (int j = 0; j < MAX_FRAMES; j++) fb[j].held = 0;
    Predictor frames[MAX_FRAMES];
    int nframes = 0;
    PyObject *result = NULL;
    if (!get_buf(z_obj, &zb, 8, "samples") || !get_frames(frame_obj, frames, fb, &nframes)) goto done;
    Py_ssize_t n = zb.view.len / 8;
    int64_t *q = NULL;
    result = new_array(n * 8, (void **)&q);
    int64_t *tmp = (int64_t *)malloc((size_t)(n ? n : 1) * 16);
    if (!result || !tmp) { Py_XDECREF(result); result = NULL; free(tmp); PyErr_NoMemory(); goto done; }
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = predict_loop((const int64_t *)zb.view.buf, n, frames, nframes, NULL, 0, q, tmp, tmp + n);
    Py_END_ALLOW_THREADS
    free(tmp);
    if (!ok) { Py_DECREF(result); result = Py_None; Py_INCREF(result); }
done:
    drop_buf(&zb);
    drop_frames(fb);
    return result;
}

static PyObject *spatial(PyObject *self, PyObject *args) {
    PyObject *ref_obj, *w_obj;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "OOn", &ref_obj, &w_obj, &n)) return NULL;
    Buf refs[MAX_REFS];
    for (int j = 0; j < MAX_REFS; j++) refs[j].held = 0;
    const int64_t *ptr[MAX_REFS];
    int32_t w[MAX_REFS];
    int m = 0;
    PyObject *result = NULL;
    if (n < 0 || !get_refs(ref_obj, n, refs, ptr, &m) || !PyList_Check(w_obj) || PyList_GET_SIZE(w_obj) != m) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad channel references");
        goto done;
    }
    for (int j = 0; j < m; j++) w[j] = (int32_t)PyLong_AsLong(PyList_GET_ITEM(w_obj, j));
    int64_t *out;
    result = new_array(n * 8, (void **)&out);
    if (result) {
        Py_BEGIN_ALLOW_THREADS
        spatial_sum(ptr, w, m, n, out);
        Py_END_ALLOW_THREADS
    }
done:
    for (int j = 0; j < MAX_REFS; j++) drop_buf(&refs[j]);
    return result;
}
/* ------------------------------------------------------------------ symbol tables (tokens) */

/* A prepared table set: rows tables of k symbols at 2^bits, each row summing to 2^bits. Layout of the
   bytes: rows × (k + 1) uint32 cumulative frequencies, then rows × 2^bits uint16 slot -> symbol. */
typedef struct { const uint32_t *cum; const uint16_t *lookup; Py_ssize_t rows, k; int bits; } SymbolTables;

static PyObject *symbol_tables(PyObject *self, PyObject *args) {
    PyObject *freq_obj;
    Py_ssize_t rows, k;
    int bits;
    if (!PyArg_ParseTuple(args, "Onni", &freq_obj, &rows, &k, &bits)) return NULL;
    Buf fb;
    if (!get_buf(freq_obj, &fb, 4, "frequencies")) { drop_buf(&fb); return NULL; }
    const uint32_t *f = (const uint32_t *)fb.view.buf;
    int ok = bits >= 1 && bits <= 16 && rows >= 0 && k >= 1 && k <= 65536 && fb.view.len == rows * k * 4;
    for (Py_ssize_t r = 0; r < rows && ok; r++) {
        uint64_t total = 0;
        for (Py_ssize_t s2 = 0; s2 < k; s2++) total += f[r * k + s2];
        ok = total == ((uint64_t)1 << bits);
    }
    if (!ok) { drop_buf(&fb); PyErr_SetString(PyExc_ValueError, "bad symbol frequencies"); return NULL; }
    size_t cum_bytes = (size_t)rows * (size_t)(k + 1) * 4, size = cum_bytes + (size_t)rows * ((size_t)1 << bits) * 2;
    char *data;
    PyObject *result = new_array((Py_ssize_t)size, (void **)&data);
    if (result) {
        uint32_t *cum = (uint32_t *)data;
        uint16_t *lookup = (uint16_t *)(data + cum_bytes);
        for (Py_ssize_t r = 0; r < rows; r++) {
            uint32_t *c = cum + r * (k + 1);
            uint16_t *l = lookup + r * ((Py_ssize_t)1 << bits);
            c[0] = 0;
            for (Py_ssize_t s2 = 0; s2 < k; s2++) {
                c[s2 + 1] = c[s2] + f[r * k + s2];
                for (uint32_t j = c[s2]; j < c[s2 + 1]; j++) l[j] = (uint16_t)s2;
            }
        }
    }
    drop_buf(&fb);
    return result;
}

static int get_tables(PyObject *obj, Buf *b, Py_ssize_t rows, Py_ssize_t k, int bits, SymbolTables *t) {
    if (!get_buf(obj, b, 1, "symbol tables")) return 0;
    size_t cum_bytes = (size_t)rows * (size_t)(k + 1) * 4;
    if (bits < 1 || bits > 16 || rows < 0 || k < 1 || k > 65536
        || (size_t)b->view.len < cum_bytes + (size_t)rows * ((size_t)1 << bits) * 2) {
        PyErr_SetString(PyExc_ValueError, "symbol tables do not match their shape");
        return 0;
    }
    t->cum = (const uint32_t *)b->view.buf;
    t->lookup = (const uint16_t *)((const char *)b->view.buf + cum_bytes);
    t->rows = rows; t->k = k; t->bits = bits;
    return 1;
}

/* Symbols row-major (row r uses table r), row 0 decoded first. `table_rows` is the table set's size;
   `rows` (at most that) is how many rows the symbols have. */
static PyObject *encode_symbols(PyObject *self, PyObject *args) {
    PyObject *sym_obj, *tab_obj;
    Py_ssize_t rows, table_rows, k;
    int bits;
    if (!PyArg_ParseTuple(args, "OnOnni", &sym_obj, &rows, &tab_obj, &table_rows, &k, &bits)) return NULL;
    Buf sb, tb;
    sb.held = tb.held = 0;
    SymbolTables t;
    if (!get_buf(sym_obj, &sb, 2, "symbols") || !get_tables(tab_obj, &tb, table_rows, k, bits, &t)
        || rows < 0 || rows > table_rows || (rows && (sb.view.len / 2) % rows)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "symbols do not match their tables");
        drop_buf(&sb); drop_buf(&tb); return NULL;
    }
    const uint16_t *sym = (const uint16_t *)sb.view.buf;
    Py_ssize_t total = sb.view.len / 2, n = rows ? total / rows : 0;
    RansOut o;
    int ok = out_init(&o, (size_t)total + 16);
    for (Py_ssize_t i = total - 1; i >= 0 && ok == 1; i--) {
        const uint32_t *c = t.cum + (i / n) * (k + 1);
        uint16_t s2 = sym[i];
        if (s2 >= k || c[s2 + 1] == c[s2]) { ok = -1; break; }
        ok = rans_put(&o, c[s2], c[s2 + 1] - c[s2], bits);
    }
    drop_buf(&sb); drop_buf(&tb);
    if (ok != 1) {
        if (o.buf) free(o.buf);
        if (ok == -1) { PyErr_SetString(PyExc_ValueError, "a symbol outside its table"); return NULL; }
        return PyErr_NoMemory();
    }
    return out_finish(&o);
}

static PyObject *decode_symbols(PyObject *self, PyObject *args) {
    PyObject *data_obj, *tab_obj;
    Py_ssize_t rows, n, table_rows, k;
    int bits;
    if (!PyArg_ParseTuple(args, "OnnOnni", &data_obj, &rows, &n, &tab_obj, &table_rows, &k, &bits)) return NULL;
    Buf db, tb;
    db.held = tb.held = 0;
    SymbolTables t;
    if (!get_buf(data_obj, &db, 1, "stream") || !get_tables(tab_obj, &tb, table_rows, k, bits, &t)
        || rows < 0 || rows > table_rows || n < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "damaged token stream (bad shape)");
        drop_buf(&db); drop_buf(&tb); return NULL;
    }
    uint32_t top = 1; /* the most probable symbol bounds how many symbols the bytes can hold */
    for (Py_ssize_t r = 0; r < rows; r++)
        for (Py_ssize_t s2 = 0; s2 < k; s2++) {
            uint32_t f = t.cum[r * (k + 1) + s2 + 1] - t.cum[r * (k + 1) + s2];
            if (f > top) top = f;
        }
    double min_bits = (double)bits - log2((double)top);
    if ((uint64_t)rows * (uint64_t)n > max_symbols((size_t)db.view.len, min_bits)) {
        drop_buf(&db); drop_buf(&tb);
        PyErr_SetString(PyExc_ValueError, "damaged token stream (more symbols than its bytes can hold)");
        return NULL;
    }
    uint16_t *out;
    PyObject *result = new_array(rows * n * 2, (void **)&out);
    if (!result) { drop_buf(&db); drop_buf(&tb); return NULL; }
    RansIn r;
    int bad;
    Py_BEGIN_ALLOW_THREADS
    in_init(&r, (const unsigned char *)db.view.buf, (size_t)db.view.len);
    for (Py_ssize_t row = 0; row < rows && !r.bad; row++) {
        const uint32_t *c = t.cum + row * (k + 1);
        const uint16_t *l = t.lookup + row * ((Py_ssize_t)1 << bits);
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t s2 = l[in_slot(&r, bits)];
            in_advance(&r, c[s2], c[s2 + 1] - c[s2], bits);
            out[row * n + i] = (uint16_t)s2;
        }
    }
    bad = !in_complete(&r);
    Py_END_ALLOW_THREADS
    drop_buf(&db); drop_buf(&tb);
    if (bad) { Py_DECREF(result); PyErr_SetString(PyExc_ValueError, "damaged token stream"); return NULL; }
    return result;
}

/* ------------------------------------------------------------------ LPC analysis (encoder only) */

/* Floating point is fine from here to the end of the section: decoders never repeat the analysis. */

typedef struct {
    double r[MAX_ORDER + 1]; /* autocorrelation of the (windowed, mean-free) part */
    double d2;               /* sum of squared first differences: the fixed first-order baseline */
    Py_ssize_t n;
} Part;

static void analyze_part(const int64_t *z, Py_ssize_t n, int max_order, Part *part, double *x) {
    memset(part, 0, sizeof(*part));
    part->n = n;
    if (n < 2) return;
    double mean = 0;
    for (Py_ssize_t t = 0; t < n; t++) mean += (double)z[t];
    mean /= (double)n;
    Py_ssize_t edge = (Py_ssize_t)(0.05 * (double)(n - 1)); /* Tukey window, alpha 0.1 */
    for (Py_ssize_t t = 0; t < n; t++) {
        double w = 1.0;
        if (edge > 0 && t < edge) w = 0.5 * (1 - cos(M_PI * (double)t / (double)edge));
        else if (edge > 0 && t >= n - edge) w = 0.5 * (1 - cos(M_PI * (double)(n - 1 - t) / (double)edge));
        x[t] = ((double)z[t] - mean) * w;
    }
    for (int lag = 0; lag <= max_order && lag < n; lag++) { /* four partial sums: the adds pipeline */
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        Py_ssize_t t = lag;
        for (; t + 4 <= n; t += 4) {
            a0 += x[t] * x[t - lag]; a1 += x[t + 1] * x[t + 1 - lag];
            a2 += x[t + 2] * x[t + 2 - lag]; a3 += x[t + 3] * x[t + 3 - lag];
        }
        for (; t < n; t++) a0 += x[t] * x[t - lag];
        part->r[lag] = (a0 + a1) + (a2 + a3);
    }
    for (Py_ssize_t t = 1; t < n; t++) { double d = (double)(z[t] - z[t - 1]); part->d2 += d * d; }
}

/* Levinson-Durbin with the order of lowest estimated cost: fills a[1..p], returns p and the cost. */
static int levinson(const Part *part, int max_order, double coef_cost, double floor2, double *best, double *cost_out) {
    double n = (double)part->n, a[MAX_ORDER + 1] = {0}, tmp[MAX_ORDER + 1];
    double d2 = part->d2 / (n > 1 ? n - 1 : 1) + 2 * floor2; /* the first-order predictor's noise gain is 1 + 1 */
    double best_cost = 0.5 * n * log2(d2 > 1e-3 ? d2 : 1e-3) + coef_cost; /* the first-order baseline */
    int best_p = 1;
    memset(best, 0, sizeof(double) * (MAX_ORDER + 1));
    best[1] = 1.0;
    double r0 = part->r[0] * (1.0 + 1e-9), err = r0;
    for (int p = 1; p <= max_order && p < part->n && err > 0 && r0 > 0; p++) {
        double acc = part->r[p];
        for (int j = 1; j < p; j++) acc -= a[j] * part->r[p - j];
        double k = acc / err;
        for (int j = 1; j < p; j++) tmp[j] = a[j] - k * a[p - j];
        for (int j = 1; j < p; j++) a[j] = tmp[j];
        a[p] = k;
        err *= 1.0 - k * k;
        if (err <= 0) break;
        double gain = 1;
        for (int j = 1; j <= p; j++) gain += a[j] * a[j];
        double v = err / n + floor2 * gain;
        double cost = 0.5 * n * log2(v > 1e-3 ? v : 1e-3) + coef_cost * p;
        if (cost < best_cost) { best_cost = cost; best_p = p; for (int j = 1; j <= p; j++) best[j] = a[j]; }
    }
    *cost_out = best_cost;
    return best_p;
}

static PyObject *quantized(const double *a, int p, int coef_bits) {
    double amax = 0;
    for (int j = 1; j <= p; j++) if (fabs(a[j]) > amax) amax = fabs(a[j]);
    int shift = coef_bits - 1 - (amax > 0 ? (int)ceil(log2(amax + 1e-12)) : 0); /* |q| < 2^(coef_bits - 1) */
    shift = shift > MAX_COEF_SHIFT ? MAX_COEF_SHIFT : (shift < 0 ? 0 : shift);
    double limit = (double)((1 << (coef_bits - 1)) - 1);
    int32_t q[MAX_ORDER];
    for (int j = 1; j <= p; j++) {
        double v = round(a[j] * (double)(1 << shift));
        q[j - 1] = (int32_t)(v > limit ? limit : (v < -limit ? -limit : v));
    }
    return Py_BuildValue("iy#", shift, (const char *)q, (Py_ssize_t)(4 * p));
}

/* lpc_plan(z, max_order, coef_bits, coef_cost, max_frames, min_frame, step) -> [(shift, int32 coefficients)]
   The block is cut into up to max_frames equal LPC frames (powers of two, each >= min_frame samples)
   when the estimated bits say so: the autocorrelations of the finest parts are computed once and summed
   for the coarser levels, so choosing costs little more than one analysis. A block whose level or
   spectrum changes (an artifact, a disconnection) would otherwise get a predictor fitted to its loudest
   part: measured 8.6 -> 5.2 bits a sample on such an eegmat block. Near-lossless coding predicts from
   reconstructed samples, whose quantization noise (variance step^2 / 12) reaches the residual through
   the predictor with gain 1 + sum a_k^2: the estimate adds it, so that a coarse bound picks a short,
   quiet predictor (measured on the bundled eegmat file at 5 uV: file ratio 5.3 -> 13.8). */
static PyObject *lpc_plan(PyObject *self, PyObject *args) {
    PyObject *obj;
    int max_order, coef_bits, max_frames;
    double coef_cost, step = 1;
    Py_ssize_t min_frame;
    if (!PyArg_ParseTuple(args, "Oiidin|d", &obj, &max_order, &coef_bits, &coef_cost, &max_frames, &min_frame, &step))
        return NULL;
    double floor2 = step > 1 ? step * step / 12.0 : 0;
    if (coef_bits < 2 || coef_bits > 21 || max_frames < 1 || max_frames > MAX_FRAMES) {
        PyErr_SetString(PyExc_ValueError, "bad analysis parameters");
        return NULL;
    }
    Buf b;
    if (!get_buf(obj, &b, 8, "samples")) { drop_buf(&b); return NULL; }
    const int64_t *z = (const int64_t *)b.view.buf;
    Py_ssize_t n = b.view.len / 8;
    if (max_order > MAX_ORDER) max_order = MAX_ORDER;
    int finest = 1;
    while (finest * 2 <= max_frames && n / (finest * 2) >= min_frame) finest *= 2;
    Part parts[MAX_FRAMES], level[MAX_FRAMES];
    double coefs[MAX_FRAMES][MAX_ORDER + 1], best_coefs[MAX_FRAMES][MAX_ORDER + 1];
    int orders[MAX_FRAMES], best_orders[MAX_FRAMES], best_frames = 1;
    double *x = (double *)malloc((size_t)(n ? n : 1) * sizeof(double));
    if (!x) { drop_buf(&b); return PyErr_NoMemory(); }
    Py_BEGIN_ALLOW_THREADS
    int order_cap = max_order < (int)(n / 8) ? max_order : (int)(n / 8);
    for (int j = 0; j < finest; j++)
        analyze_part(z + frame_start(n, finest, j), frame_start(n, finest, j + 1) - frame_start(n, finest, j),
                     order_cap, &parts[j], x);
    double best_total = INFINITY;
    for (int frames = 1; frames <= finest; frames *= 2) {
        int group = finest / frames;
        double total = 24.0 * frames;
        for (int j = 0; j < frames; j++) {
            memset(&level[j], 0, sizeof(Part));
            for (int i = j * group; i < (j + 1) * group; i++) {
                level[j].n += parts[i].n;
                level[j].d2 += parts[i].d2;
                for (int lag = 0; lag <= order_cap; lag++) level[j].r[lag] += parts[i].r[lag];
            }
            double cost;
            int cap = order_cap < (int)(level[j].n / 8) ? order_cap : (int)(level[j].n / 8);
            orders[j] = cap >= 1 ? levinson(&level[j], cap, coef_cost, floor2, coefs[j], &cost) : 0;
            if (cap < 1) cost = 0;
            total += cost;
        }
        if (total < best_total) {
            best_total = total;
            best_frames = frames;
            memcpy(best_orders, orders, sizeof(orders));
            memcpy(best_coefs, coefs, sizeof(coefs));
        }
    }
    Py_END_ALLOW_THREADS
    free(x);
    drop_buf(&b);
    PyObject *list = PyList_New(best_frames);
    for (int j = 0; list && j < best_frames; j++) {
        PyObject *item = quantized(best_coefs[j], best_orders[j], coef_bits);
        if (!item) { Py_DECREF(list); return NULL; }
        PyList_SET_ITEM(list, j, item);
    }
    return list;
}

static PyMethodDef METHODS[] = {
    {"exact_encode", exact_encode, METH_VARARGS,
     "exact_encode(z, g, m, k, frames, coef_bits, positions, weights, references) -> (stream, r') or None"},
    {"exact_decode", exact_decode, METH_VARARGS, "exact_decode(stream, n, lo, hi, lossless, earlier r') -> (x, r')"},
    {"lpc_plan", lpc_plan, METH_VARARGS,
     "lpc_plan(z int64, max_order, coef_bits, coef_cost, max_frames, min_frame[, step]) -> [(shift, i32 coefs)]"},
    {"lpc_residual", lpc_residual, METH_VARARGS, "lpc_residual(z, [(shift, coefs)]) -> int64 residual or None"},
    {"spatial", spatial, METH_VARARGS, "spatial([r_j int64], [w_j], n) -> int64 prediction"},
    {"residual_costs", residual_costs, METH_VARARGS, "residual_costs(e int64[, family]) -> bits (per family)"},
    {"encode_residuals", encode_residuals, METH_VARARGS, "encode_residuals(e int64, family, s0) -> bytes"},
    {"decode_residuals", decode_residuals, METH_VARARGS, "decode_residuals(data, n, family, s0) -> int64 bytes"},
    {"symbol_tables", symbol_tables, METH_VARARGS, "symbol_tables(freqs u32, rows, k, bits) -> prepared tables"},
    {"encode_symbols", encode_symbols, METH_VARARGS, "encode_symbols(symbols u16, rows, tables, table_rows, k, bits)"},
    {"decode_symbols", decode_symbols, METH_VARARGS, "decode_symbols(data, rows, n, tables, table_rows, k, bits)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_core", "eegz's compiled inner loops", -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__core(void) {
    build_tables();
    PyObject *m = PyModule_Create(&MODULE);
    if (!m) return NULL;
    PyModule_AddIntConstant(m, "N_FAMILIES", N_FAMILIES);
    PyModule_AddIntConstant(m, "MAX_ORDER", MAX_ORDER);
    PyModule_AddIntConstant(m, "MAX_FRAMES", MAX_FRAMES);
    PyModule_AddIntConstant(m, "MAX_REFS", MAX_REFS);
    PyModule_AddIntConstant(m, "REF_SHIFT", REF_SHIFT);
    PyModule_AddIntConstant(m, "CONTEXT_RATE", CONTEXT_RATE);
    return m;
}
