/* eegz._core: the compiled inner loops of format 3 (spec/eegz-format.md, sections 5 and 6).
 *
 * - rANS with a 32-bit state and 16-bit words, integer tables only (spec 5.2);
 * - the context-adaptive residual coder over the tables of spec/tables/residual-v3.tsv (spec 5.3);
 * - integer LPC prediction and synthesis with residual-domain channel references, lossless and
 *   near-lossless (spec 5.4); LPC analysis (encoder only: any coefficients decode).
 *
 * Every function that decodes validates what it reads and raises ValueError on a damaged stream, with
 * every intermediate value bounded so that no arithmetic can overflow on hostile input. A block's exact
 * streams are coded in one call without the GIL, so a Python thread pool codes blocks on all cores.
 *
 * Sections: scratch memory | rANS | residual tables and coder | prediction | encoder analysis |
 * stream format | group encoding | group decoding | token tables | the neural codec's activation |
 * entry points.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_tables.h"

typedef double v2d __attribute__((vector_size(16))); /* GCC and Clang vectors: SSE2 on x86-64, NEON on ARM */

#define RANS_L (1u << 16)
#define RESIDUAL_PROB_BITS 12
#define CONTEXT_RATE 4            /* S <- S + floor((A - S) / 2^4) */
#define CONTEXT_LIMIT (1 << 26)   /* |e| is capped at this in the context update */
#define MAX_ORDER 32
#define MAX_FRAMES 8 /* LPC frames of a stream: equal parts, each with its own predictor */
#define SPLIT_MAX_ORDER 16 /* the encoder's order limit when a block is cut into frames */
#define MAX_COEF_SHIFT 24
#define COEF_LIMIT (1 << 20) /* |a_k| < 2^20: with |y| <= 2^26 every sum fits in 63 bits */
#define MAX_REFS 8
#define REF_SHIFT 12
#define VALUE_LIMIT ((int64_t)1 << 40) /* |residual| and |q| a stream may hold */

/* ------------------------------------------------------------------ per-thread scratch memory */

/* Work buffers are kept per thread and only ever grow: allocating and freeing them per stream made the
   kernel fault 460 MB of pages an hour of EEG (a quarter of the encoder's time). A few MB a thread. */
enum { SCRATCH_RANS, SCRATCH_CLASSES, SCRATCH_WORK, SCRATCH_GRAM, SCRATCH_LPC, SCRATCH_ARENA, N_SCRATCH };
typedef struct { void *p[N_SCRATCH]; size_t cap[N_SCRATCH]; } Scratch;
static pthread_key_t SCRATCH_KEY;

static void scratch_free(void *ptr) {
    Scratch *s = (Scratch *)ptr;
    for (int i = 0; i < N_SCRATCH; i++) free(s->p[i]);
    free(s);
}

/* At least `bytes` of this thread's buffer `slot`; earlier contents are kept (realloc). */
static void *scratch(int slot, size_t bytes) {
    Scratch *s = (Scratch *)pthread_getspecific(SCRATCH_KEY);
    if (!s) {
        s = (Scratch *)calloc(1, sizeof(Scratch));
        if (!s || pthread_setspecific(SCRATCH_KEY, s)) { free(s); return NULL; }
    }
    if (bytes > s->cap[slot]) {
        size_t cap = bytes + bytes / 4 + 4096;
        void *p = realloc(s->p[slot], cap);
        if (!p) return NULL;
        s->p[slot] = p;
        s->cap[slot] = cap;
    }
    return s->p[slot];
}

/* ------------------------------------------------------------------ rANS writer and reader */

typedef struct {
    uint16_t *buf; /* words are written downwards from the end */
    size_t cap, pos;
    uint32_t x;
} RansOut;

/* The output words live in the thread's SCRATCH_RANS buffer (nothing to free). */
static int out_init(RansOut *o, size_t words) {
    o->cap = words + 4;
    o->buf = (uint16_t *)scratch(SCRATCH_RANS, o->cap * sizeof(uint16_t));
    o->pos = o->cap;
    o->x = RANS_L;
    return o->buf != NULL;
}

static int out_grow(RansOut *o) {
    size_t used = o->cap - o->pos, cap = 2 * o->cap;
    uint16_t *b = (uint16_t *)scratch(SCRATCH_RANS, cap * sizeof(uint16_t));
    if (!b) return 0;
    memmove(b + cap - used, b + o->pos, used * sizeof(uint16_t));
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
    if (o->pos < 2 && !out_grow(o)) return PyErr_NoMemory();
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

static PyObject *damaged(const char *why) {
    PyErr_Format(PyExc_ValueError, "damaged exact stream (%s)", why);
    return NULL;
}

static PyObject *new_array(Py_ssize_t bytes, void **data) {
    PyObject *o = PyBytes_FromStringAndSize(NULL, bytes);
    if (o) *data = PyBytes_AS_STRING(o);
    return o;
}

/* ------------------------------------------------------------------ residual coder kernels (spec 5.3) */

static int residual_encode(RansOut *o, const int64_t *e, Py_ssize_t n, int family, int64_t s0) {
    uint8_t *cls = (uint8_t *)scratch(SCRATCH_CLASSES, n ? (size_t)n : 1);
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

/* Estimated bits of each family (family < 0), or of one family, from the table costs of every
   stride-th sample (the context follows every sample), scaled to the whole stream. */
static void residual_cost(const int64_t *e, Py_ssize_t n, int64_t s0, int family, double *cost, int stride) {
    int first = family < 0 ? 0 : family, last = family < 0 ? N_FAMILIES - 1 : family;
    for (int f = first; f <= last; f++) cost[f] = 0;
    int64_t s = s0;
    for (Py_ssize_t t = 0; t < n; t++) {
        if (t % stride == 0) {
            int c = class_of(s);
            uint64_t u = zigzag(e[t]);
            for (int f = first; f <= last; f++) {
                const ClassTable *tb = &TABLES[f][c];
                uint64_t h = u >> tb->shift;
                int esc = tb->size - 1;
                cost[f] += tb->shift + (h >= (uint64_t)esc ? COST[f][c][esc] + 7 + bit_length(h - (uint64_t)esc) : COST[f][c][h]);
            }
        }
        s = context_update(s, e[t]);
    }
    for (int f = first; f <= last; f++) cost[f] *= stride;
}

/* 16 × the mean |e| of the first 16 values: the writer's context start (any value decodes). */
static int64_t context_start(const int64_t *e, Py_ssize_t n) {
    Py_ssize_t m = n < 16 ? n : 16;
    int64_t sum = 0;
    for (Py_ssize_t t = 0; t < m; t++) sum += e[t] < 0 ? -e[t] : e[t];
    int64_t s = m ? (16 * sum) / m : 0;
    return s > ((int64_t)1 << 30) ? ((int64_t)1 << 30) : s;
}

/* One residual decoder's state: several of them step in turn, so that their dependency chains (context
   -> table -> state -> value -> context) overlap in the processor. The words are copied into a buffer with
   DEC_PAD zero words after them, so that a step refills without a bounds check: a step reads at most 7
   words and the position is checked once a step. Each class table entry packs symbol, start and frequency
   (one load instead of three). */
#define DEC_PAD 16
static uint32_t PACKED[N_FAMILIES][N_CLASSES][1 << RESIDUAL_PROB_BITS]; /* sym | start << 6 | freq << 18 */

static void build_packed(void) {
    for (int f = 0; f < N_FAMILIES; f++)
        for (int c = 0; c < N_CLASSES; c++) {
            const ClassTable *t = &TABLES[f][c];
            for (int slot = 0; slot < (1 << RESIDUAL_PROB_BITS); slot++) {
                uint32_t sym = t->lookup[slot], start = t->start[sym], freq = (uint32_t)(t->start[sym + 1] - start);
                PACKED[f][c][slot] = sym | (start << 6) | (freq << 18);
            }
        }
}

typedef struct {
    const uint16_t *w;
    size_t pos, nw;
    uint32_t x;
    const uint32_t (*packed)[1 << RESIDUAL_PROB_BITS];
    const ClassTable *tables;
    int64_t s, *out;
    Py_ssize_t n, t;
    int bad;
} Dec;

static inline __attribute__((always_inline)) void dec_refill(Dec *d, uint32_t x) {
    uint32_t need = x < RANS_L;
    d->x = need ? ((x << 16) | d->w[d->pos]) : x;
    d->pos += need;
}

static inline __attribute__((always_inline)) uint32_t dec_uniform(Dec *d, int bits) {
    uint32_t v = d->x & ((1u << bits) - 1);
    dec_refill(d, d->x >> bits);
    return v;
}

static inline __attribute__((always_inline)) void dec_step(Dec *d) {
    int c = class_of(d->s);
    uint32_t slot = d->x & ((1u << RESIDUAL_PROB_BITS) - 1);
    uint32_t e = d->packed[c][slot];
    uint32_t sym = e & 63, start = (e >> 6) & 4095, freq = e >> 18;
    dec_refill(d, freq * (d->x >> RESIDUAL_PROB_BITS) + slot - start);
    const ClassTable *tb = &d->tables[c];
    uint64_t h = sym;
    int shift = tb->shift;
    if (__builtin_expect(sym == (uint32_t)(tb->size - 1), 0)) {
        uint32_t len = dec_uniform(d, 7);
        if (len > 41) { d->bad = 1; d->t = d->n; return; }
        uint64_t v = 0;
        for (int i = 0; i * 16 < (int)len; i++) v |= (uint64_t)dec_uniform(d, (int)len - 16 * i < 16 ? (int)len - 16 * i : 16) << (16 * i);
        h += v;
        if (h > ((uint64_t)1 << 42) >> shift) { d->bad = 1; d->t = d->n; return; }
    }
    uint64_t low;
    if (shift <= 16) low = dec_uniform(d, shift);
    else { low = dec_uniform(d, 16); low |= (uint64_t)dec_uniform(d, shift - 16) << 16; }
    int64_t v = unzigzag((h << shift) | low);
    d->out[d->t++] = v;
    d->s = context_update(d->s, v);
    if (__builtin_expect(d->pos > d->nw, 0)) { d->bad = 1; d->t = d->n; } /* ran past the words */
}

/* words: the stream's u16 words copied into `buf` (nw + DEC_PAD entries). */
static void dec_start(Dec *d, const unsigned char *words, size_t bytes, int family, int64_t s0, Py_ssize_t n,
                      int64_t *out, uint16_t *buf) {
    size_t nw = bytes / 2;
    for (size_t i = 0; i < nw; i++) buf[i] = (uint16_t)(words[2 * i] | (words[2 * i + 1] << 8));
    memset(buf + nw, 0, DEC_PAD * sizeof(uint16_t));
    d->w = buf;
    d->nw = nw;
    d->bad = (bytes % 2) != 0 || nw < 2;
    d->x = d->bad ? RANS_L : ((uint32_t)buf[0] | ((uint32_t)buf[1] << 16));
    if (d->x < RANS_L) d->bad = 1;
    d->pos = 2;
    d->packed = PACKED[family];
    d->tables = TABLES[family];
    d->s = s0;
    d->out = out;
    d->n = d->bad ? 0 : n;
    d->t = 0;
}

static int dec_finish(const Dec *d) { return !d->bad && d->x == RANS_L && d->pos == d->nw; }

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

/* Frame j of a stream cut into `frames` equal LPC frames starts here (spec 5.4). */
static inline Py_ssize_t frame_start(Py_ssize_t n, int frames, int j) { return (Py_ssize_t)(((int64_t)n * j) / frames); }

/* The lossless LPC residual z - pred(z): no recursion, so four instants at a time share each coefficient
   (2-3x faster than predict_loop); 0 when a value leaves the range a decoder accepts. */
static int fir_residual(const int64_t *z, Py_ssize_t n, const Predictor *frames, int nframes, int64_t *out) {
    int64_t bad = 0;
    for (int j = 0; j < nframes; j++) {
        const Predictor *p = &frames[j];
        Py_ssize_t t = frame_start(n, nframes, j), end = frame_start(n, nframes, j + 1);
        for (; t < end && (t < p->order || t == 0 || p->order == 0); t++) out[t] = z[t] - predict_at(p, z, t);
        int64_t round = p->shift ? ((int64_t)1 << (p->shift - 1)) : 0;
        for (; t + 4 <= end; t += 4) {
            int64_t s0 = round, s1 = round, s2 = round, s3 = round;
            const int64_t *h = z + t - 1;
            for (int k = 0; k < p->order; k++) {
                int64_t c = p->coefs[k];
                s0 += c * h[-k]; s1 += c * h[1 - k]; s2 += c * h[2 - k]; s3 += c * h[3 - k];
            }
            out[t] = z[t] - (s0 >> p->shift);
            out[t + 1] = z[t + 1] - (s1 >> p->shift);
            out[t + 2] = z[t + 2] - (s2 >> p->shift);
            out[t + 3] = z[t + 3] - (s3 >> p->shift);
        }
        for (; t < end; t++) out[t] = z[t] - predict_at(p, z, t);
    }
    for (Py_ssize_t t = 0; t < n; t++) bad |= (out[t] > VALUE_LIMIT) | (out[t] < -VALUE_LIMIT);
    return !bad;
}

/* Encoder: q (entropy coded) and r' (the reconstructed residual later streams reference); 0 when a value
   leaves the range a decoder accepts (the caller keeps the stream raw). */
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

/* One stream's synthesis state (decoder): given r' (the whole residual, references included), each step
   computes y_t = pred_t + r'_t. Streams are independent at this point, so the group decoder steps two in
   turn and their recursions' latencies overlap.

   The recursion runs in double precision, which is exact here: |a_k| < 2^20 and |y| < 2^27 (checked from the
   stream's range), so every product is below 2^47 and every sum of 32 below 2^52, all integers a double
   holds exactly; the result is then floored in integers as the spec says. Doubles let the older terms go two
   at a time (SSE2, NEON) and keep the newest sample's term, the recursion's critical path, last. */
typedef struct {
    const Predictor *frames, *p;
    int nframes, j, older, exact_in_double, bad;
    Py_ssize_t n, t, next;
    const int64_t *r;
    int64_t *y, zlo, zhi, round;
    double *yd, c0, cr[MAX_ORDER + 2];
} Syn;

static void syn_frame(Syn *s) {
    s->p = &s->frames[s->j];
    memset(s->cr, 0, sizeof(s->cr));
    for (int i = 0; i + 1 < s->p->order; i++) s->cr[i] = (double)s->p->coefs[s->p->order - 1 - i];
    s->c0 = s->p->order ? (double)s->p->coefs[0] : 0.0;
    s->round = s->p->shift ? ((int64_t)1 << (s->p->shift - 1)) : 0;
    s->older = s->p->order - 1;
    s->next = frame_start(s->n, s->nframes, s->j + 1);
}

static void syn_start(Syn *s, const Predictor *frames, int nframes, Py_ssize_t n, const int64_t *r, int64_t zlo,
                      int64_t zhi, int64_t *y, double *yd) {
    s->frames = frames; s->nframes = nframes; s->n = n; s->r = r; s->zlo = zlo; s->zhi = zhi; s->y = y; s->yd = yd;
    s->exact_in_double = zlo > -(1LL << 27) && zhi < (1LL << 27);
    s->j = 0; s->t = 0; s->bad = 0;
    syn_frame(s);
}

static inline __attribute__((always_inline)) void syn_step(Syn *s) {
    Py_ssize_t t = s->t;
    while (t == s->next && s->j + 1 < s->nframes) { s->j++; syn_frame(s); }
    const Predictor *p = s->p;
    int64_t pred;
    if (t < p->order || !s->exact_in_double || p->order == 0) {
        pred = predict_at(p, s->y, t);
    } else {
        const double *h = s->yd + t - p->order;
        v2d a0 = {0, 0}, a1 = {0, 0};
        int i = 0;
        for (; i + 4 <= s->older; i += 4) {
            v2d h0, h1, c0v, c1v;
            memcpy(&h0, h + i, 16); memcpy(&h1, h + i + 2, 16);
            memcpy(&c0v, s->cr + i, 16); memcpy(&c1v, s->cr + i + 2, 16);
            a0 += h0 * c0v;
            a1 += h1 * c1v;
        }
        double acc = (a0[0] + a1[0]) + (a0[1] + a1[1]);
        for (; i < s->older; i++) acc += s->cr[i] * h[i];
        acc += s->c0 * s->yd[t - 1];
        pred = ((int64_t)acc + s->round) >> p->shift;
    }
    int64_t yt = pred + s->r[t];
    if (yt < s->zlo || yt > s->zhi) { s->bad = 1; s->t = s->n; return; }
    s->y[t] = yt;
    s->yd[t] = (double)yt;
    s->t = t + 1;
}

/* ------------------------------------------------------------------ encoder analysis (floating point) */

/* Nothing in this section decides a decoded value: decoders never repeat it, so floating point is fine. */

static int64_t gcd64(int64_t a, int64_t b) {
    if (a < 0) a = -a;
    if (b < 0) b = -b;
    while (b) { int64_t t = a % b; a = b; b = t; }
    return a;
}

/* (g, m) with x = g·z + m exactly: g the common step of all samples (BioSemi's wasted bits), m the value
   on that grid nearest the mean, so that a predictor whose coefficients do not sum to one leaves no bias. */
static void affine_of(const int64_t *x, Py_ssize_t n, int64_t *g_out, int64_t *m_out) {
    int64_t g = 0;
    double mean = 0;
    for (Py_ssize_t t = 1; t < n && g != 1; t++) if (x[t] != x[0]) g = gcd64(g, x[t] - x[0]);
    for (Py_ssize_t t = 0; t < n; t++) mean += (double)x[t];
    if (n == 0) { *g_out = 1; *m_out = 0; return; }
    mean /= (double)n;
    if (g <= 0 || g >= (1 << 24)) g = 1;
    int64_t c = ((x[0] % g) + g) % g;
    *g_out = g;
    *m_out = c + g * (int64_t)llround((mean - (double)c) / (double)g);
}

typedef struct {
    double r[MAX_ORDER + 1]; /* autocorrelation of the (windowed, mean-free) part */
    double d2;               /* sum of squared first differences: the fixed first-order baseline */
    Py_ssize_t n;
} Part;

/* The autocorrelation and first-difference energy of z[0 .. n), mean-free and Tukey-windowed (alpha 0.1).
   x: n doubles of scratch. */
static void analyze_part(const int64_t *z, Py_ssize_t n, int max_order, Part *part, double *x) {
    memset(part, 0, sizeof(*part));
    part->n = n;
    if (n < 2) return;
    double mean = 0;
    for (Py_ssize_t t = 0; t < n; t++) mean += (double)z[t];
    mean /= (double)n;
    Py_ssize_t edge = (Py_ssize_t)(0.05 * (double)(n - 1));
    for (Py_ssize_t t = 0; t < n; t++) {
        double w = 1.0;
        if (edge > 0 && t < edge) w = 0.5 * (1 - cos(M_PI * (double)t / (double)edge));
        else if (edge > 0 && t >= n - edge) w = 0.5 * (1 - cos(M_PI * (double)(n - 1 - t) / (double)edge));
        x[t] = ((double)z[t] - mean) * w;
    }
    for (int lag = 0; lag <= max_order && lag < n; lag++) { /* two 2-wide partial sums (SSE2, NEON) */
        v2d a0 = {0, 0}, a1 = {0, 0};
        Py_ssize_t t = lag;
        for (; t + 4 <= n; t += 4) {
            v2d p0, p1, q0, q1;
            memcpy(&p0, x + t, 16); memcpy(&p1, x + t + 2, 16);
            memcpy(&q0, x + t - lag, 16); memcpy(&q1, x + t + 2 - lag, 16);
            a0 += p0 * q0;
            a1 += p1 * q1;
        }
        double acc = (a0[0] + a1[0]) + (a0[1] + a1[1]);
        for (; t < n; t++) acc += x[t] * x[t - lag];
        part->r[lag] = acc;
    }
    for (Py_ssize_t t = 1; t < n; t++) { double d = (double)(z[t] - z[t - 1]); part->d2 += d * d; }
}

/* Levinson-Durbin with the order of lowest estimated cost: fills a[1..p], returns p and the cost. Near-
   lossless coding predicts from reconstructed samples, whose quantization noise (variance floor2 =
   step^2 / 12) reaches the residual through the predictor with gain 1 + sum a_k^2: the estimate adds it,
   so that a coarse bound picks a short, quiet predictor (measured on the bundled eegmat file at 5 uV:
   file ratio 5.3 -> 13.8). */
static int levinson(const Part *part, int max_order, double coef_cost, double floor2, double *best, double *cost_out) {
    double n = (double)part->n, a[MAX_ORDER + 1] = {0}, tmp[MAX_ORDER + 1];
    double d2 = part->d2 / (n > 1 ? n - 1 : 1) + 2 * floor2; /* the first-order predictor's noise gain is 1 + 1 */
    double best_cost = 0.5 * n * log2(d2 > 1e-3 ? d2 : 1e-3) + coef_cost;
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

/* Coefficients a[1..p] as integers of coef_bits bits with the sign (|q| < 2^(coef_bits - 1)); the shift. */
static int quantize_coefs(const double *a, int p, int coef_bits, int32_t *q) {
    double amax = 0;
    for (int j = 1; j <= p; j++) if (fabs(a[j]) > amax) amax = fabs(a[j]);
    int shift = coef_bits - 1 - (amax > 0 ? (int)ceil(log2(amax + 1e-12)) : 0);
    shift = shift > MAX_COEF_SHIFT ? MAX_COEF_SHIFT : (shift < 0 ? 0 : shift);
    double limit = (double)((1 << (coef_bits - 1)) - 1);
    for (int j = 1; j <= p; j++) {
        double v = round(a[j] * (double)(1 << shift));
        q[j - 1] = (int32_t)(v > limit ? limit : (v < -limit ? -limit : v));
    }
    return shift;
}

/* The block's predictor: one LPC frame from the whole block's analysis, or up to max_frames equal frames
   (powers of two, each >= min_frame samples) when the estimated bits say so. For the split levels the
   finest parts are analyzed once (each mean-free and windowed on its own: a step between parts must not
   count as signal) and summed for the coarser levels. A block whose level or spectrum changes (an
   artifact, a disconnection) would otherwise get a predictor fitted to its loudest part: measured 8.6 ->
   5.2 bits a sample on such an eegmat block. x: n doubles of scratch. Fills frames[] (coefficients in
   coefs[][]) and returns the frame count. */
static int plan_frames(const int64_t *z, Py_ssize_t n, int max_order, int coef_bits, double coef_cost,
                       int max_frames, Py_ssize_t min_frame, double step, double *x, Predictor *frames,
                       int32_t coefs[][MAX_ORDER]) {
    double floor2 = step > 1 ? step * step / 12.0 : 0;
    int finest = 1;
    while (finest * 2 <= max_frames && n / (finest * 2) >= min_frame) finest *= 2;
    Part parts[MAX_FRAMES], level;
    double a[MAX_FRAMES][MAX_ORDER + 1], best_a[MAX_FRAMES][MAX_ORDER + 1];
    int orders[MAX_FRAMES], best_orders[MAX_FRAMES], best_count = 1;
    int cap = max_order < (int)(n / 8) ? max_order : (int)(n / 8);
    if (cap > MAX_ORDER) cap = MAX_ORDER;
    double best_total = 24.0;
    memset(best_orders, 0, sizeof(best_orders));
    analyze_part(z, n, cap, &level, x); /* one frame: the whole block */
    double cost = 0;
    best_orders[0] = cap >= 1 ? levinson(&level, cap, coef_cost, floor2, best_a[0], &cost) : 0;
    best_total += cost;
    int part_cap = cap < SPLIT_MAX_ORDER ? cap : SPLIT_MAX_ORDER; /* short frames want short predictors */
    if (finest > 1)
        for (int j = 0; j < finest; j++)
            analyze_part(z + frame_start(n, finest, j), frame_start(n, finest, j + 1) - frame_start(n, finest, j),
                         part_cap, &parts[j], x);
    for (int count = 2; count <= finest; count *= 2) {
        int group = finest / count;
        double total = 24.0 * count;
        for (int j = 0; j < count; j++) {
            memset(&level, 0, sizeof(Part));
            for (int i = j * group; i < (j + 1) * group; i++) {
                level.n += parts[i].n;
                level.d2 += parts[i].d2;
                for (int lag = 0; lag <= part_cap; lag++) level.r[lag] += parts[i].r[lag];
            }
            double part_cost = 0;
            int c = part_cap < (int)(level.n / 8) ? part_cap : (int)(level.n / 8);
            orders[j] = c >= 1 ? levinson(&level, c, coef_cost, floor2, a[j], &part_cost) : 0;
            total += part_cost;
        }
        if (total < best_total) {
            best_total = total;
            best_count = count;
            memcpy(best_orders, orders, sizeof(orders));
            memcpy(best_a, a, sizeof(a));
        }
    }
    for (int j = 0; j < best_count; j++) {
        frames[j].order = best_orders[j];
        frames[j].coefs = coefs[j];
        frames[j].shift = quantize_coefs(best_a[j], best_orders[j], coef_bits, coefs[j]);
    }
    return best_count;
}

/* Solve the small symmetric positive system a·w = b (k <= MAX_REFS) by Cholesky; 0 if not positive. */
static int cholesky_solve(double a[MAX_REFS][MAX_REFS], const double *b, int k, double *w) {
    double l[MAX_REFS][MAX_REFS] = {{0}}, y[MAX_REFS];
    for (int i = 0; i < k; i++)
        for (int j = 0; j <= i; j++) {
            double s = a[i][j];
            for (int p = 0; p < j; p++) s -= l[i][p] * l[j][p];
            if (i == j) { if (s <= 0) return 0; l[i][i] = sqrt(s); }
            else l[i][j] = s / l[j][j];
        }
    for (int i = 0; i < k; i++) { double s = b[i]; for (int p = 0; p < i; p++) s -= l[i][p] * y[p]; y[i] = s / l[i][i]; }
    for (int i = k - 1; i >= 0; i--) { double s = y[i]; for (int p = i + 1; p < k; p++) s -= l[p][i] * w[p]; w[i] = s / l[i][i]; }
    return 1;
}

/* The gram matrix of m residuals of n samples, each clipped at `clip` times its mean magnitude (so that a
   blink in the frontal channels does not decide the references of every other channel). */
static void clipped_gram(const int64_t *const *res, Py_ssize_t m, Py_ssize_t n, double clip, double *gram, double *x) {
    for (Py_ssize_t i = 0; i < m; i++) {
        double level = 0;
        for (Py_ssize_t t = 0; t < n; t++) level += (double)(res[i][t] < 0 ? -res[i][t] : res[i][t]);
        double limit = clip * level / (double)(n ? n : 1) + 1.0;
        for (Py_ssize_t t = 0; t < n; t++) {
            double v = (double)res[i][t];
            x[i * n + t] = v > limit ? limit : (v < -limit ? -limit : v);
        }
    }
    for (Py_ssize_t i = 0; i < m; i++)
        for (Py_ssize_t j = 0; j <= i; j++) {
            const double *a = x + i * n, *b = x + j * n;
            v2d s0 = {0, 0}, s1 = {0, 0};
            Py_ssize_t t = 0;
            for (; t + 4 <= n; t += 4) {
                v2d a0, a1, b0, b1;
                memcpy(&a0, a + t, 16); memcpy(&a1, a + t + 2, 16); memcpy(&b0, b + t, 16); memcpy(&b1, b + t + 2, 16);
                s0 += a0 * b0;
                s1 += a1 * b1;
            }
            double s = (s0[0] + s1[0]) + (s0[1] + s1[1]);
            for (; t < n; t++) s += a[t] * b[t];
            gram[i * m + j] = gram[j * m + i] = s;
        }
}

/* For each of m streams of one length (their lossless residuals res), the earlier ones whose residuals
   predict its own best: at most MAX_REFS by |correlation| of the clipped residuals, least-squares weights
   in Q12, kept only when the coder's cost estimate drops by more than ref_cost bits a reference (plain
   L2 made eegmat 8 % larger). Fills count[], pos[][] (indices into res) and w[][]. work: 3 n + m (m + n)
   doubles. */
static void choose_refs(const int64_t *const *res, Py_ssize_t m, Py_ssize_t n, double clip, double ref_cost,
                        int *count, int pos[][MAX_REFS], int32_t w[][MAX_REFS], double *work) {
    double *gram = work, *x = work + m * m;
    int64_t *pred = (int64_t *)(x + m * n), *diff = pred + n;
    clipped_gram(res, m, n, clip, gram, x);
    for (Py_ssize_t row = 0; row < m; row++) count[row] = 0;
    for (Py_ssize_t row = 1; row < m; row++) {
        double energy = gram[row * m + row];
        if (energy <= 0) continue;
        int refs[MAX_REFS], k = 0;
        double score[MAX_REFS];
        for (Py_ssize_t j = 0; j < row; j++) { /* keep the MAX_REFS best by |g_rj| / sqrt(g_jj g_rr) */
            double gj = gram[j * m + j];
            if (gj <= 0) continue;
            double sc = fabs(gram[row * m + j]) / sqrt(gj * energy);
            if (sc <= 0.1) continue;
            int at = k < MAX_REFS ? k++ : MAX_REFS;
            if (at == MAX_REFS) { if (sc <= score[MAX_REFS - 1]) continue; at = MAX_REFS - 1; }
            while (at > 0 && score[at - 1] < sc) { score[at] = score[at - 1]; refs[at] = refs[at - 1]; at--; }
            score[at] = sc;
            refs[at] = (int)j;
        }
        if (!k) continue;
        double a[MAX_REFS][MAX_REFS], b[MAX_REFS], sol[MAX_REFS];
        for (int i = 0; i < k; i++) {
            b[i] = gram[row * m + refs[i]];
            for (int j = 0; j < k; j++) a[i][j] = gram[refs[i] * m + refs[j]];
            a[i][i] *= 1.0 + 1e-9;
        }
        if (!cholesky_solve(a, b, k, sol)) continue;
        int32_t wq[MAX_REFS];
        const int64_t *rp[MAX_REFS];
        for (int i = 0; i < k; i++) {
            double v = round(sol[i] * (1 << REF_SHIFT));
            wq[i] = (int32_t)(v > 32767 ? 32767 : (v < -32768 ? -32768 : v));
            rp[i] = res[refs[i]];
        }
        spatial_sum(rp, wq, k, n, pred);
        for (Py_ssize_t t = 0; t < n; t++) diff[t] = res[row][t] - pred[t];
        double before, after;
        residual_cost(res[row], n, context_start(res[row], n), 0, &before, 4);
        residual_cost(diff, n, context_start(diff, n), 0, &after, 4);
        if (before - after > ref_cost * k) {
            count[row] = k;
            for (int i = 0; i < k; i++) { pos[row][i] = refs[i]; w[row][i] = wq[i]; }
        }
    }
}

/* ------------------------------------------------------------------ the stream format (spec 5.4) */

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

/* ------------------------------------------------------------------ a block's exact streams: encoding */

/* The encoder's choices (spec 5.4 says what a decoder accepts; these only say what eegz writes). */
#define ENC_MAX_ORDER 32
#define ENC_COEF_BITS 19      /* coefficient precision with the sign */
#define ENC_COEF_COST 24.0    /* bits a coefficient is charged in the order choice: above its 19, for decode time */
#define ENC_MIN_FRAME 512     /* samples an LPC frame holds at the least */
#define ENC_MIN_REF_SAMPLES 64
#define ENC_REF_CLIP 5.0      /* residuals are clipped at this many mean magnitudes before correlating them */
#define ENC_REF_COST 48.0     /* bits a reference is charged before it is kept (its 32 and a margin) */

typedef struct {
    Py_ssize_t n;
    int64_t g, m, k;
    const int64_t *x;
    int64_t *z, *res, *r; /* samples on the affine grid, lossless LPC residual, reconstructed residual */
    int predicted, nframes, nrefs;
    Predictor frames[MAX_FRAMES];
    int32_t coefs[MAX_FRAMES][MAX_ORDER];
    int ref_pos[MAX_REFS];
    int32_t w[MAX_REFS];
    size_t offset, size; /* its bytes in the output arena */
} Plan;

/* Encoder features, all on by default; benchmarks/exact_benchmark.py turns them off one by one. */
enum { USE_FRAMES = 1, USE_REFS = 2, USE_FAMILIES = 4, USE_ALL = 7 };

/* Append a method-0 stream (spec 5.4) for plan p with residuals q to the arena; 0 when out of memory. */
static int write_stream(Plan *p, const int64_t *q, int features, unsigned char **arena, size_t *used) {
    double cost[N_FAMILIES];
    int64_t s0 = context_start(q, p->n);
    int family = 0;
    if (features & USE_FAMILIES) {
        residual_cost(q, p->n, s0, -1, cost, 4);
        for (int f = 1; f < N_FAMILIES; f++) if (cost[f] < cost[family]) family = f;
    }
    RansOut o;
    if (!out_init(&o, (size_t)p->n + 16) || !residual_encode(&o, q, p->n, family, s0)) return 0;
    if (o.pos < 2 && !out_grow(&o)) return 0;
    o.buf[--o.pos] = (uint16_t)(o.x >> 16);
    o.buf[--o.pos] = (uint16_t)(o.x & 0xffff);
    size_t words = o.cap - o.pos, coef_bytes = 0;
    for (int j = 0; j < p->nframes; j++) coef_bytes += 3 + ((size_t)p->frames[j].order * ENC_COEF_BITS + 7) / 8;
    size_t size = HEAD_BYTES + 1 + coef_bytes + 1 + 4 * (size_t)p->nrefs + 5 + 2 * words;
    unsigned char *s = (unsigned char *)scratch(SCRATCH_ARENA, *used + size);
    if (!s) return 0;
    *arena = s;
    s += *used;
    p->offset = *used;
    p->size = size;
    *used += size;
    s[0] = 0;
    put_u32(s + 1, (uint32_t)p->n);
    put_u32(s + 5, (uint32_t)p->g);
    put_u64(s + 9, (uint64_t)p->m);
    put_u32(s + 17, (uint32_t)p->k);
    unsigned char *c = s + HEAD_BYTES;
    *c++ = (unsigned char)p->nframes;
    for (int j = 0; j < p->nframes; j++) {
        c[0] = (unsigned char)p->frames[j].order; c[1] = (unsigned char)p->frames[j].shift; c[2] = ENC_COEF_BITS;
        pack_coefs(p->frames[j].coefs, p->frames[j].order, ENC_COEF_BITS, c + 3);
        c += 3 + ((size_t)p->frames[j].order * ENC_COEF_BITS + 7) / 8;
    }
    *c++ = (unsigned char)p->nrefs;
    for (int j = 0; j < p->nrefs; j++, c += 4) {
        c[0] = (unsigned char)(p->ref_pos[j] & 0xff); c[1] = (unsigned char)(p->ref_pos[j] >> 8);
        c[2] = (unsigned char)(p->w[j] & 0xff); c[3] = (unsigned char)((uint32_t)p->w[j] >> 8);
    }
    *c++ = (unsigned char)family;
    put_u32(c, (uint32_t)s0);
    c += 4;
    for (size_t i = 0; i < words; i++) {
        c[2 * i] = (unsigned char)(o.buf[o.pos + i] & 0xff);
        c[2 * i + 1] = (unsigned char)(o.buf[o.pos + i] >> 8);
    }
    return 1;
}

static double frames_bits(const Plan *p, const int64_t *res) {
    double bits = 0;
    residual_cost(res, p->n, context_start(res, p->n), 0, &bits, 4);
    for (int j = 0; j < p->nframes; j++) bits += 24 + ENC_COEF_BITS * p->frames[j].order;
    return bits;
}

/* LPC frames are chosen from estimates of the residual's power, which a few outliers can mislead; the
   coder's own estimate decides between them and one frame (measured: frames made 3 of 10 datasets up to
   7 % larger without this check). work1, work2: n int64 each. */
static void keep_cheaper_single_frame(Plan *p, double *x, int64_t *work1, int64_t *work2) {
    Plan one = *p;
    one.nframes = plan_frames(p->z, p->n, ENC_MAX_ORDER, ENC_COEF_BITS, ENC_COEF_COST, 1, ENC_MIN_FRAME,
                              (double)(2 * p->k + 1), x, one.frames, one.coefs);
    for (int j = 0; j < one.nframes; j++) one.frames[j].coefs = one.coefs[j];
    if (!fir_residual(p->z, p->n, one.frames, one.nframes, work1)) return;
    if (!p->predicted || frames_bits(&one, work1) < frames_bits(p, p->res)) {
        memcpy(p->res, work1, (size_t)p->n * 8);
        p->nframes = one.nframes;
        memcpy(p->coefs, one.coefs, sizeof(one.coefs));
        for (int j = 0; j < p->nframes; j++) { p->frames[j] = one.frames[j]; p->frames[j].coefs = p->coefs[j]; }
        p->predicted = 1;
    }
    (void)work2;
}

/* Plan, choose references for and code every stream of a group; streams that cannot be predicted (their
   values overflow the decoder's ranges, or the caller forces them raw) get predicted = 0. */
static int encode_group_plans(Plan *plans, Py_ssize_t count, const int *force_raw, int features, unsigned char **arena,
                              size_t *used) {
    Py_ssize_t total = 0, longest = 1;
    for (Py_ssize_t i = 0; i < count; i++) { total += plans[i].n; if (plans[i].n > longest) longest = plans[i].n; }
    int64_t *mem = (int64_t *)scratch(SCRATCH_WORK, (size_t)(3 * total + 3 * longest + 1) * 8);
    double *x = (double *)scratch(SCRATCH_LPC, (size_t)longest * 8 + 8);
    if (!mem || !x) return 0;
    int64_t *q = mem + 3 * total, *y = q + longest, *sp = y + longest;
    for (Py_ssize_t i = 0, at = 0; i < count; i++) {
        Plan *p = &plans[i];
        p->z = mem + at; p->res = mem + at + p->n; p->r = mem + at + 2 * p->n;
        at += 3 * p->n;
        affine_of(p->x, p->n, &p->g, &p->m);
        for (Py_ssize_t t = 0; t < p->n; t++) p->z[t] = (p->x[t] - p->m) / p->g;
        p->k /= p->g;
        p->nrefs = 0;
        p->predicted = !force_raw[i];
        if (p->predicted) {
            p->nframes = plan_frames(p->z, p->n, ENC_MAX_ORDER, ENC_COEF_BITS, ENC_COEF_COST,
                                     features & USE_FRAMES ? MAX_FRAMES : 1, ENC_MIN_FRAME, (double)(2 * p->k + 1), x,
                                     p->frames, p->coefs);
            p->predicted = fir_residual(p->z, p->n, p->frames, p->nframes, p->res);
            if (p->nframes > 1) keep_cheaper_single_frame(p, x, y, q);
        }
    }
    /* references among predicted streams of one length */
    int *members = (int *)malloc(sizeof(int) * (size_t)(count + 1));
    int *counts = (int *)malloc(sizeof(int) * (size_t)(count + 1));
    int (*pos)[MAX_REFS] = malloc(sizeof(*pos) * (size_t)(count + 1));
    int32_t (*w)[MAX_REFS] = malloc(sizeof(*w) * (size_t)(count + 1));
    const int64_t **res = (const int64_t **)malloc(sizeof(int64_t *) * (size_t)(count + 1));
    int ok = members && counts && pos && w && res;
    char *done = (char *)calloc((size_t)count + 1, 1);
    ok = ok && done;
    for (Py_ssize_t i = 0; ok && (features & USE_REFS) && i < count; i++) {
        if (done[i] || !plans[i].predicted || plans[i].n < ENC_MIN_REF_SAMPLES) continue;
        Py_ssize_t m = 0;
        for (Py_ssize_t j = i; j < count; j++)
            if (!done[j] && plans[j].predicted && plans[j].n == plans[i].n) { members[m] = (int)j; res[m] = plans[j].res; done[j] = 1; m++; }
        if (m < 2) continue;
        double *work = (double *)scratch(SCRATCH_GRAM, (size_t)(m * m + m * plans[i].n + 2 * plans[i].n + 1) * 8);
        if (!work) { ok = 0; break; }
        choose_refs(res, m, plans[i].n, ENC_REF_CLIP, ENC_REF_COST, counts, pos, w, work);
        for (Py_ssize_t row = 0; row < m; row++) {
            Plan *p = &plans[members[row]];
            p->nrefs = counts[row];
            for (int k = 0; k < p->nrefs; k++) { p->ref_pos[k] = members[pos[row][k]]; p->w[k] = w[row][k]; }
        }
    }
    free(members); free(counts); free(pos); free(w); free(res); free(done);
    if (!ok) return 0;
    /* code in order: a stream's references are reconstructed before it */
    for (Py_ssize_t i = 0; i < count; i++) {
        Plan *p = &plans[i];
        if (!p->predicted) continue;
        for (int j = 0; j < p->nrefs; j++)
            if (!plans[p->ref_pos[j]].predicted) { p->nrefs = 0; break; } /* a reference that went raw */
        const int64_t *rp[MAX_REFS];
        for (int j = 0; j < p->nrefs; j++) rp[j] = plans[p->ref_pos[j]].r;
        if (p->nrefs) spatial_sum(rp, p->w, p->nrefs, p->n, sp);
        if (p->k) { /* near-lossless predicts from reconstructed samples: a recursion */
            p->predicted = predict_loop(p->z, p->n, p->frames, p->nframes, p->nrefs ? sp : NULL, p->k, q, p->r, y);
        } else { /* lossless: q = residual - spatial prediction, r' = residual */
            memcpy(p->r, p->res, (size_t)p->n * 8);
            for (Py_ssize_t t = 0; t < p->n; t++) {
                q[t] = p->nrefs ? p->res[t] - sp[t] : p->res[t];
                if (q[t] > VALUE_LIMIT || q[t] < -VALUE_LIMIT) p->predicted = 0;
            }
        }
        if (p->predicted && !write_stream(p, q, features, arena, used)) return 0;
    }
    return 1;
}

/* exact_encode_group(samples [int64], bounds [K in digital steps], force_raw [bool][, features]) -> [bytes | None]:
   the method-0 stream of every item of a group (a block's exact channels, in signal order), None for
   those to keep raw (the caller codes them; none of the others references them). */
static PyObject *exact_encode_group(PyObject *self, PyObject *args) {
    PyObject *samples_obj, *bounds_obj, *raw_obj;
    int features = USE_ALL;
    if (!PyArg_ParseTuple(args, "OOO|i", &samples_obj, &bounds_obj, &raw_obj, &features)) return NULL;
    if (!PyList_Check(samples_obj) || !PyList_Check(bounds_obj) || !PyList_Check(raw_obj)
        || PyList_GET_SIZE(bounds_obj) != PyList_GET_SIZE(samples_obj) || PyList_GET_SIZE(raw_obj) != PyList_GET_SIZE(samples_obj)
        || PyList_GET_SIZE(samples_obj) > 65536) {
        PyErr_SetString(PyExc_ValueError, "bad encoding arguments");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(samples_obj);
    Buf *bufs = (Buf *)calloc((size_t)count + 1, sizeof(Buf));
    Plan *plans = (Plan *)calloc((size_t)count + 1, sizeof(Plan));
    int *force_raw = (int *)calloc((size_t)count + 1, sizeof(int));
    PyObject *result = NULL;
    if (!bufs || !plans || !force_raw) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!get_buf(PyList_GET_ITEM(samples_obj, i), &bufs[i], 8, "samples")) goto done;
        plans[i].x = (const int64_t *)bufs[i].view.buf;
        plans[i].n = bufs[i].view.len / 8;
        plans[i].k = PyLong_AsLongLong(PyList_GET_ITEM(bounds_obj, i));
        force_raw[i] = PyObject_IsTrue(PyList_GET_ITEM(raw_obj, i));
        if (PyErr_Occurred() || plans[i].k < 0 || plans[i].k > (1LL << 31) || force_raw[i] < 0 || plans[i].n > 0xffffffffLL) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad bound or length");
            goto done;
        }
    }
    unsigned char *arena = NULL;
    size_t used = 0;
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = encode_group_plans(plans, count, force_raw, features, &arena, &used);
    Py_END_ALLOW_THREADS
    if (!ok) { PyErr_NoMemory(); goto done; }
    result = PyList_New(count);
    for (Py_ssize_t i = 0; result && i < count; i++) {
        PyObject *o = plans[i].predicted ? PyBytes_FromStringAndSize((const char *)arena + plans[i].offset, (Py_ssize_t)plans[i].size)
                                         : (Py_INCREF(Py_None), Py_None);
        if (!o) { Py_CLEAR(result); break; }
        PyList_SET_ITEM(result, i, o);
    }
done:
    for (Py_ssize_t i = 0; bufs && i < count; i++) drop_buf(&bufs[i]);
    free(bufs); free(plans); free(force_raw);
    return result;
}

/* ------------------------------------------------------------------ a block's exact streams: decoding */

typedef struct {
    const unsigned char *words;
    size_t words_len;
    Predictor frames[MAX_FRAMES];
    int32_t coefs[MAX_FRAMES][MAX_ORDER];
    int nframes, nrefs, family;
    int ref_pos[MAX_REFS];
    int32_t w[MAX_REFS];
    int64_t g, m, k, s0;
    Py_ssize_t n;
} Parsed;

/* Parse and validate a method-0 stream at `position` of its group; NULL or what is wrong. */
static const char *parse_stream(const unsigned char *s, size_t len, Py_ssize_t n, int64_t lo, int64_t hi, int lossless,
                                int position, const Py_ssize_t *lengths, const int *predicted, Parsed *p) {
    if (len < HEAD_BYTES + 1) return "shorter than its header";
    if (s[0] != 0) return "not a predicted stream";
    p->g = get_u32(s + 5); p->m = (int64_t)get_u64(s + 9); p->k = get_u32(s + 17); p->n = n;
    if ((Py_ssize_t)get_u32(s + 1) != n) return "sample count differs from the block's";
    if (p->g < 1 || p->g > hi - lo + 1 || p->m < lo - p->g || p->m > hi + p->g || p->k > hi - lo || (lossless && p->k))
        return "step, offset or bound out of range";
    const unsigned char *c = s + HEAD_BYTES;
    p->nframes = *c++;
    if (p->nframes < 1 || p->nframes > MAX_FRAMES) return "predictor frame count out of range";
    for (int j = 0; j < p->nframes; j++) {
        if ((size_t)(c - s) + 3 > len) return "truncated header";
        int bits = c[2];
        p->frames[j].order = c[0]; p->frames[j].shift = c[1]; p->frames[j].coefs = p->coefs[j];
        if (p->frames[j].order > MAX_ORDER || bits < 2 || bits > 21) return "predictor order or precision out of range";
        size_t coef_bytes = ((size_t)p->frames[j].order * bits + 7) / 8;
        if ((size_t)(c - s) + 3 + coef_bytes > len) return "truncated header";
        unpack_coefs(c + 3, p->frames[j].order, bits, p->coefs[j]);
        if (!predictor_ok(&p->frames[j])) return "predictor out of range";
        c += 3 + coef_bytes;
    }
    if ((size_t)(c - s) + 1 > len) return "truncated header";
    p->nrefs = *c++;
    if (p->nrefs > MAX_REFS || len < (size_t)(c - s) + 4 * (size_t)p->nrefs + 5) return "truncated references";
    for (int j = 0; j < p->nrefs; j++, c += 4) {
        p->ref_pos[j] = c[0] | (c[1] << 8);
        p->w[j] = (int16_t)(uint16_t)(c[2] | (c[3] << 8));
        if (p->ref_pos[j] >= position || !predicted[p->ref_pos[j]] || lengths[p->ref_pos[j]] != n)
            return "a reference to a stream that is not an earlier predicted stream of its length";
    }
    p->family = c[0];
    p->s0 = get_u32(c + 1);
    c += 5;
    if (p->family >= N_FAMILIES || p->s0 > ((int64_t)CONTEXT_LIMIT << 4)) return "bad residual coder state";
    p->words = c;
    p->words_len = len - (size_t)(c - s);
    if ((uint64_t)n > max_symbols(p->words_len, MIN_SYMBOL_BITS)) return "more samples than its bytes hold";
    return NULL;
}

/* exact_decode_group(streams [bytes | None], lengths [int], lo, hi, lossless [bool])
   -> [int32 samples | None]: every method-0 stream of a block; None marks the others (raw streams,
   decoded by the caller), which no stream may reference. Residuals decode two streams at a time. */
static PyObject *exact_decode_group(PyObject *self, PyObject *args) {
    PyObject *streams_obj, *n_obj, *lossless_obj;
    long long lo, hi;
    if (!PyArg_ParseTuple(args, "OOLLO", &streams_obj, &n_obj, &lo, &hi, &lossless_obj)) return NULL;
    if (!PyList_Check(streams_obj) || !PyList_Check(n_obj) || !PyList_Check(lossless_obj)
        || PyList_GET_SIZE(n_obj) != PyList_GET_SIZE(streams_obj) || PyList_GET_SIZE(lossless_obj) != PyList_GET_SIZE(streams_obj)
        || lo > hi || lo < -(1LL << 31) || hi >= (1LL << 31) || PyList_GET_SIZE(streams_obj) > 65536) {
        PyErr_SetString(PyExc_ValueError, "bad decoding arguments");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(streams_obj);
    Buf *bufs = (Buf *)calloc((size_t)count + 1, sizeof(Buf));
    Parsed *parsed = (Parsed *)calloc((size_t)count + 1, sizeof(Parsed));
    Py_ssize_t *lengths = (Py_ssize_t *)calloc((size_t)count + 1, sizeof(Py_ssize_t));
    int *predicted = (int *)calloc((size_t)count + 1, sizeof(int));
    int32_t **outs = (int32_t **)calloc((size_t)count + 1, sizeof(int32_t *));
    int64_t **rs = (int64_t **)calloc((size_t)count + 1, sizeof(int64_t *));
    PyObject *result = NULL;
    const char *why = NULL;
    Py_ssize_t total = 0;
    if (!bufs || !parsed || !lengths || !predicted || !outs || !rs) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < count; i++) {
        lengths[i] = PyLong_AsSsize_t(PyList_GET_ITEM(n_obj, i));
        int lossless = PyObject_IsTrue(PyList_GET_ITEM(lossless_obj, i));
        if (lengths[i] < 0 || lossless < 0 || PyErr_Occurred()) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad length"); goto done; }
        PyObject *item = PyList_GET_ITEM(streams_obj, i);
        if (item == Py_None) continue;
        if (!get_buf(item, &bufs[i], 1, "stream")) goto done;
        why = parse_stream((const unsigned char *)bufs[i].view.buf, (size_t)bufs[i].view.len, lengths[i], lo, hi,
                           lossless, (int)i, lengths, predicted, &parsed[i]);
        if (why) { damaged(why); goto done; }
        predicted[i] = 1;
        total += lengths[i];
    }
    result = PyList_New(count);
    for (Py_ssize_t i = 0; result && i < count; i++) {
        PyObject *o = Py_None;
        if (predicted[i]) {
            void *x;
            o = new_array(lengths[i] * 4, &x);
            if (!o) { Py_CLEAR(result); break; }
            outs[i] = (int32_t *)x;
        } else {
            Py_INCREF(o);
        }
        PyList_SET_ITEM(result, i, o);
    }
    if (!result) goto done;
    Py_ssize_t longest = 1;
    for (Py_ssize_t i = 0; i < count; i++) if (lengths[i] > longest) longest = lengths[i];
    int64_t *work = (int64_t *)scratch(SCRATCH_WORK, (size_t)(2 * total + 5 * longest + 1) * 8);
    if (!work) { Py_CLEAR(result); PyErr_NoMemory(); goto done; }
    int status = 0;
    Py_BEGIN_ALLOW_THREADS
    int64_t **qs = (int64_t **)scratch(SCRATCH_CLASSES, (size_t)(count + 1) * sizeof(int64_t *));
    if (!qs) status = -3;
    int64_t *pos = work;
    for (Py_ssize_t i = 0; i < count && status == 0; i++)
        if (predicted[i]) { qs[i] = pos; rs[i] = pos + lengths[i]; pos += 2 * lengths[i]; }
    int64_t *y = pos, *sp = pos + longest;
    double *yd = (double *)(pos + 2 * longest);
    size_t most_words = 0;
    for (Py_ssize_t s = 0; s < count; s++) if (predicted[s] && parsed[s].words_len / 2 > most_words) most_words = parsed[s].words_len / 2;
    uint16_t *wa = (uint16_t *)scratch(SCRATCH_GRAM, (most_words + DEC_PAD) * 2 * sizeof(uint16_t) + 16);
    uint16_t *wb = wa ? wa + most_words + DEC_PAD : NULL;
    if (!wa) status = -3;
    /* residuals: two streams in turn */
    Py_ssize_t i = 0;
    while (status == 0 && i < count) {
        while (i < count && !predicted[i]) i++;
        Py_ssize_t j = i + 1;
        while (j < count && !predicted[j]) j++;
        if (i >= count) break;
        Dec a, b;
        const Parsed *pa = &parsed[i], *pb = &parsed[j < count ? j : i];
        dec_start(&a, pa->words, pa->words_len, pa->family, pa->s0, pa->n, qs[i], wa);
        if (j < count) {
            dec_start(&b, pb->words, pb->words_len, pb->family, pb->s0, pb->n, qs[j], wb);
            while (a.t < a.n && b.t < b.n) { dec_step(&a); dec_step(&b); }
            while (b.t < b.n) dec_step(&b);
            if (!dec_finish(&b)) status = -1;
        }
        while (a.t < a.n) dec_step(&a);
        if (!dec_finish(&a)) status = -1;
        i = j + 1;
    }
    /* then, in order, each stream's references: r' = spatial + step · q (no recursion yet) */
    for (Py_ssize_t s = 0; s < count && status == 0; s++) {
        if (!predicted[s]) continue;
        const Parsed *p = &parsed[s];
        int64_t step = 2 * p->k + 1, qmax = VALUE_LIMIT / step;
        for (Py_ssize_t t = 0; t < p->n; t++) {
            int64_t acc = (int64_t)1 << (REF_SHIFT - 1);
            for (int r = 0; r < p->nrefs; r++) acc += (int64_t)p->w[r] * rs[p->ref_pos[r]][t];
            int64_t sp_t = p->nrefs ? acc >> REF_SHIFT : 0, q = qs[s][t];
            if (q > qmax || q < -qmax || sp_t > VALUE_LIMIT || sp_t < -VALUE_LIMIT) { status = -2; break; }
            int64_t r = sp_t + q * step;
            if (r > VALUE_LIMIT || r < -VALUE_LIMIT) { status = -2; break; }
            rs[s][t] = r;
        }
    }
    /* then the recursions, two streams in turn, and the affine step */
    int64_t *y2 = sp;
    double *yd2 = (double *)(pos + 3 * longest);
    Py_ssize_t next = 0;
    while (status == 0 && next < count) {
        Py_ssize_t pair[2], m = 0;
        while (next < count && m < 2) { if (predicted[next]) pair[m++] = next; next++; }
        Syn st[2];
        int64_t *ys[2] = {y, y2};
        double *yds[2] = {yd, yd2};
        for (int i = 0; i < m; i++) {
            const Parsed *p = &parsed[pair[i]];
            int64_t lo64 = lo, hi64 = hi, g = p->g, mm = p->m, k = p->k;
            int64_t zlo = -((mm - lo64) / g + ((mm - lo64) % g < 0)) - k; /* ceil((lo - m) / g) - k */
            int64_t zhi = (hi64 - mm) / g - ((hi64 - mm) % g < 0) + k;
            syn_start(&st[i], p->frames, p->nframes, p->n, rs[pair[i]], zlo, zhi, ys[i], yds[i]);
        }
        if (m == 2) while (st[0].t < st[0].n && st[1].t < st[1].n) { syn_step(&st[0]); syn_step(&st[1]); }
        for (int i = 0; i < m; i++) {
            while (st[i].t < st[i].n) syn_step(&st[i]);
            if (st[i].bad) { status = -2; break; }
            const Parsed *p = &parsed[pair[i]];
            int64_t lo64 = lo, hi64 = hi;
            int32_t *x = outs[pair[i]];
            for (Py_ssize_t t = 0; t < p->n; t++) {
                int64_t v = p->g * ys[i][t] + p->m;
                x[t] = (int32_t)(v < lo64 ? lo64 : (v > hi64 ? hi64 : v));
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (status) {
        Py_CLEAR(result);
        if (status == -3) PyErr_NoMemory();
        else damaged(status == -1 ? "residuals" : "a value outside its range");
    }
done:
    for (Py_ssize_t i = 0; bufs && i < count; i++) drop_buf(&bufs[i]);
    free(bufs); free(parsed); free(lengths); free(predicted); free(outs); free(rs);
    return result;
}

/* ------------------------------------------------------------------ smaller entry points (tests, tools) */

/* lpc_plan(z int64, max_order, coef_bits, coef_cost, max_frames, min_frame[, step]) -> [(shift, int32 coefficients)] */
static PyObject *lpc_plan(PyObject *self, PyObject *args) {
    PyObject *obj;
    int max_order, coef_bits, max_frames;
    double coef_cost, step = 1;
    Py_ssize_t min_frame;
    if (!PyArg_ParseTuple(args, "Oiidin|d", &obj, &max_order, &coef_bits, &coef_cost, &max_frames, &min_frame, &step))
        return NULL;
    if (coef_bits < 2 || coef_bits > 21 || max_frames < 1 || max_frames > MAX_FRAMES || max_order < 0) {
        PyErr_SetString(PyExc_ValueError, "bad analysis parameters");
        return NULL;
    }
    Buf b;
    if (!get_buf(obj, &b, 8, "samples")) { drop_buf(&b); return NULL; }
    Py_ssize_t n = b.view.len / 8;
    double *x = (double *)scratch(SCRATCH_LPC, (size_t)(n ? n : 1) * sizeof(double));
    if (!x) { drop_buf(&b); return PyErr_NoMemory(); }
    Predictor frames[MAX_FRAMES];
    int32_t coefs[MAX_FRAMES][MAX_ORDER];
    int count;
    Py_BEGIN_ALLOW_THREADS
    count = plan_frames((const int64_t *)b.view.buf, n, max_order, coef_bits, coef_cost, max_frames, min_frame, step, x,
                        frames, coefs);
    Py_END_ALLOW_THREADS
    drop_buf(&b);
    PyObject *list = PyList_New(count);
    for (int j = 0; list && j < count; j++) {
        PyObject *item = Py_BuildValue("iy#", frames[j].shift, (const char *)coefs[j], (Py_ssize_t)(4 * frames[j].order));
        if (!item) { Py_CLEAR(list); break; }
        PyList_SET_ITEM(list, j, item);
    }
    return list;
}

/* lpc_residual(z, [(shift, coefs)]) -> int64 residual, or None when a value leaves the decoder's range */
static PyObject *lpc_residual(PyObject *self, PyObject *args) {
    PyObject *z_obj, *list;
    if (!PyArg_ParseTuple(args, "OO", &z_obj, &list)) return NULL;
    if (!PyList_Check(list) || PyList_GET_SIZE(list) < 1 || PyList_GET_SIZE(list) > MAX_FRAMES) {
        PyErr_SetString(PyExc_ValueError, "1 to 8 predictor frames are needed");
        return NULL;
    }
    Buf zb, fb[MAX_FRAMES];
    zb.held = 0;
    for (int j = 0; j < MAX_FRAMES; j++) fb[j].held = 0;
    Predictor frames[MAX_FRAMES];
    int nframes = (int)PyList_GET_SIZE(list);
    PyObject *result = NULL;
    if (!get_buf(z_obj, &zb, 8, "samples")) goto done;
    for (int j = 0; j < nframes; j++) {
        PyObject *coefs;
        int shift;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(list, j), "iO", &shift, &coefs) || !get_buf(coefs, &fb[j], 4, "coefficients")) goto done;
        frames[j].coefs = (const int32_t *)fb[j].view.buf;
        frames[j].order = (int)(fb[j].view.len / 4);
        frames[j].shift = shift;
        if (!predictor_ok(&frames[j])) { PyErr_SetString(PyExc_ValueError, "bad predictor"); goto done; }
    }
    Py_ssize_t n = zb.view.len / 8;
    int64_t *q = NULL;
    result = new_array(n * 8, (void **)&q);
    if (!result) goto done;
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = fir_residual((const int64_t *)zb.view.buf, n, frames, nframes, q);
    Py_END_ALLOW_THREADS
    if (!ok) { Py_DECREF(result); result = Py_None; Py_INCREF(result); }
done:
    drop_buf(&zb);
    for (int j = 0; j < MAX_FRAMES; j++) drop_buf(&fb[j]);
    return result;
}


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
    if (!ok) return PyErr_NoMemory();
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
    if ((uint64_t)n > max_symbols((size_t)b.view.len, MIN_SYMBOL_BITS)) { drop_buf(&b); return damaged("more samples than its bytes hold"); }
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
    residual_cost(e, n, context_start(e, n), family, cost, 1);
    Py_END_ALLOW_THREADS
    drop_buf(&b);
    if (family >= 0) return PyFloat_FromDouble(cost[family]);
    PyObject *t = PyTuple_New(N_FAMILIES);
    for (int f = 0; f < N_FAMILIES; f++) PyTuple_SET_ITEM(t, f, PyFloat_FromDouble(cost[f]));
    return t;
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

/* ---------------------------------------------------------------- the neural codec's activation */

/* Snake, x + sin²(αx)/α with one α per channel, for DAC's encoder and decoder at inference (float32,
   (batch, channels, length) in C order). sin² has period π: αx is reduced by whole multiples of π (π in
   three parts, cephes's: each k·part is exact for |αx| < SNAKE_FAST_LIMIT) and sin(r)/r on |r| <= π/2 is its
   Taylor polynomial in r² up to r¹² (truncation below 5e-10). Within a few float32 ulps of torch's sin; as
   one vectorized pass it takes half the time of torch's four (which were a fifth of the encoder's). Larger
   |αx| (no trained model comes near) take libm's double sin. */
#define SNAKE_FAST_LIMIT 8192.0f

#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && !defined(__clang__)
/* One clone a vector width, picked at load time through glibc's ifunc (torch's own kernels dispatch so too).
   Element by element the same float operations (-std=c99: no contraction into FMA), so every clone gives the
   same bits. */
#define SNAKE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SNAKE_CLONES
#endif

SNAKE_CLONES
static void snake_row(const float *restrict x, float a, float *restrict out, Py_ssize_t n) {
    const float inv_a = 1.0f / (a + 1e-9f), inv_pi = 0.318309886183790671538f, round = 12582912.0f;
    const float pi_a = 3.140625f, pi_b = 9.67502593994140625e-4f, pi_c = 1.509957990978376432e-7f;
    for (Py_ssize_t i = 0; i < n; i++) {
        float u = a * x[i];
        float k = (u * inv_pi + round) - round; /* nearest integer, |u/π| < 2^22 */
        float r = ((u - k * pi_a) - k * pi_b) - k * pi_c;
        float z = r * r;
        float p = 1.0f + z * (-1.66666666666666667e-1f + z * (8.33333333333333333e-3f + z * (-1.98412698412698413e-4f
                  + z * (2.75573192239858907e-6f + z * (-2.50521083854417188e-8f + z * 1.60590438368216146e-10f)))));
        float s = r * p;
        out[i] = x[i] + inv_a * (s * s);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!(fabsf(a * x[i]) < SNAKE_FAST_LIMIT)) { /* and NaN */
            double s = sin((double)(a * x[i]));
            out[i] = x[i] + inv_a * (float)(s * s);
        }
    }
}

static PyObject *snake(PyObject *self, PyObject *args) {
    PyObject *x_obj, *alpha_obj, *out_obj;
    Py_ssize_t length;
    if (!PyArg_ParseTuple(args, "OOOn", &x_obj, &alpha_obj, &out_obj, &length)) return NULL;
    Buf xb, ab, ob;
    xb.held = ab.held = ob.held = 0;
    PyObject *result = NULL;
    if (!get_buf(x_obj, &xb, 4, "x") || !get_buf(alpha_obj, &ab, 4, "alpha")) goto done;
    if (PyObject_GetBuffer(out_obj, &ob.view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) goto done;
    ob.held = 1;
    Py_ssize_t n = xb.view.len / 4, channels = ab.view.len / 4;
    if (ob.view.len != xb.view.len || length < 1 || channels < 1 || n % (channels * length)) {
        PyErr_SetString(PyExc_ValueError, "snake: out must match x, and x hold whole rows of every channel");
        goto done;
    }
    const float *x = (const float *)xb.view.buf, *alpha = (const float *)ab.view.buf;
    float *out = (float *)ob.view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t row = 0; row < n / length; row++)
        snake_row(x + row * length, alpha[row % channels], out + row * length, length);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    drop_buf(&xb);
    drop_buf(&ab);
    drop_buf(&ob);
    return result;
}

/* tune_malloc(): keep freed memory in the process (glibc). Blocks allocate and free the same sizes over
   and over; returning them to the kernel cost 35 000 page faults an hour of EEG (10 % of the encoder's
   wall time). For the command line, which owns its process; a library user keeps the defaults. */
static PyObject *tune_malloc(PyObject *self, PyObject *args) {
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
    Py_RETURN_NONE;
}

static PyMethodDef METHODS[] = {
    {"exact_encode_group", exact_encode_group, METH_VARARGS,
     "exact_encode_group(samples [int64], bounds [int], force_raw [bool]) -> [stream bytes | None]"},
    {"exact_decode_group", exact_decode_group, METH_VARARGS,
     "exact_decode_group(streams [bytes | None], lengths [int], lo, hi, lossless [bool]) -> [int32 samples | None]"},
    {"lpc_plan", lpc_plan, METH_VARARGS,
     "lpc_plan(z int64, max_order, coef_bits, coef_cost, max_frames, min_frame[, step]) -> [(shift, i32 coefs)]"},
    {"lpc_residual", lpc_residual, METH_VARARGS, "lpc_residual(z, [(shift, coefs)]) -> int64 residual or None"},
    {"residual_costs", residual_costs, METH_VARARGS, "residual_costs(e int64[, family]) -> bits (per family)"},
    {"encode_residuals", encode_residuals, METH_VARARGS, "encode_residuals(e int64, family, s0) -> bytes"},
    {"decode_residuals", decode_residuals, METH_VARARGS, "decode_residuals(data, n, family, s0) -> int64 bytes"},
    {"symbol_tables", symbol_tables, METH_VARARGS, "symbol_tables(freqs u32, rows, k, bits) -> prepared tables"},
    {"encode_symbols", encode_symbols, METH_VARARGS, "encode_symbols(symbols u16, rows, tables, table_rows, k, bits)"},
    {"decode_symbols", decode_symbols, METH_VARARGS, "decode_symbols(data, rows, n, tables, table_rows, k, bits)"},
    {"snake", snake, METH_VARARGS, "snake(x f32, alpha f32 [channels], out f32, length): out = x + sin(alpha x)^2 / alpha"},
    {"tune_malloc", tune_malloc, METH_NOARGS, "keep freed memory in the process (glibc; the command line calls it)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_core", "eegz's compiled inner loops", -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__core(void) {
    if (pthread_key_create(&SCRATCH_KEY, scratch_free)) return PyErr_NoMemory();
    build_tables();
    build_packed();
    PyObject *m = PyModule_Create(&MODULE);
    if (!m) return NULL;
    PyModule_AddIntConstant(m, "N_FAMILIES", N_FAMILIES);
    PyModule_AddIntConstant(m, "MAX_ORDER", MAX_ORDER);
    PyModule_AddIntConstant(m, "MAX_FRAMES", MAX_FRAMES);
    PyModule_AddIntConstant(m, "MAX_REFS", MAX_REFS);
    PyModule_AddIntConstant(m, "REF_SHIFT", REF_SHIFT);
    PyModule_AddIntConstant(m, "CONTEXT_RATE", CONTEXT_RATE);
    PyModule_AddIntConstant(m, "USE_FRAMES", USE_FRAMES);
    PyModule_AddIntConstant(m, "USE_REFS", USE_REFS);
    PyModule_AddIntConstant(m, "USE_FAMILIES", USE_FAMILIES);
    PyModule_AddIntConstant(m, "USE_ALL", USE_ALL);
    return m;
}
