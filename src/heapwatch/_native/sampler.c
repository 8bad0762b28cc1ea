/* The sampling allocation profiler: the allocator hook, its live-sample and stack
 * tables, and the functions the agent calls (see sampler.h for the rules the hook keeps).
 */
#include "sampler.h"
#include "jobs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct hw_stack {
    struct hw_stack *next; /* hash chain, or the pending-release list */
    uint64_t hash;
    uint32_t live;         /* live samples pointing here */
    uint32_t nframe;
    /* drain-time accumulators */
    double acc_blocks;
    double acc_bytes;
    uint64_t acc_n;
    hw_frame frames[];
} hw_stack;

typedef struct {
    uintptr_t ptr; /* 0: empty slot (a copy of the key, for the table's walks) */
    size_t size;
    double inv_p;  /* 1 / P(sampled) = 1 / (1 - exp(-size / T)) at the time */
    hw_stack *stack;
} hw_entry;

typedef struct {
    PyMemAllocatorEx orig; /* the allocator it replaced */
    PyMemAllocatorDomain domain;
    int installed;         /* somewhere in the domain's chain */
} hw_domain;

static hw_domain g_dom[2] = {
    {.domain = PYMEM_DOMAIN_MEM},
    {.domain = PYMEM_DOMAIN_OBJ},
};

static struct {
    int enabled;
    double interval;  /* T, mean bytes between samples */
    int depth;
    size_t max_samples;
    int64_t countdown; /* bytes left until the next sample */
    int64_t drawn;     /* the countdown as drawn: drawn - countdown bytes since the draw */
    uint64_t allocated; /* bytes allocated through the hook before the current draw */
    uint64_t ignored;   /* of all those, bytes allocated inside ignored threads' windows */
    uint64_t rng;
    uintptr_t *keys; /* the live table's keys alone: a free probes only these */
    hw_entry *live;
    size_t live_cap; /* power of two */
    size_t live_count;
    unsigned live_shift;
    hw_stack **buckets;
    size_t nbuckets; /* power of two */
    size_t nstacks;
    hw_stack *pending; /* to release under the GIL (left by a fork) */
    uint64_t samples;
    uint64_t dropped;
    uint64_t reinstalls;
} S = {.interval = 512.0 * 1024, .depth = 16, .max_samples = 200000};

/* A filter in front of the live table: one bit per hash of a live sample's address, set
 * while any live sample has that hash (counted in filt_n, read only when samples come and
 * go). A free tests one bit of this 8 KiB, which stays in the cache, and probes the live
 * table (a cache miss in a larger table, a third of the hook's cost) only when it is set:
 * about live samples / 65,536 of frees. Exact, never stale: pymalloc hands a freed block's
 * address to the very next allocation of its size, so a bit left set would be hit again and
 * again. */
#define HW_FILT_BITS 16
static uint64_t filt[(1u << HW_FILT_BITS) / 64];
static uint16_t filt_n[1u << HW_FILT_BITS]; /* saturates: then its bit stays set */

static _Thread_local int tl_busy;   /* sampling or draining on this thread */
static _Thread_local int tl_ignore; /* this thread's allocations are not sampled */
static _Thread_local uint64_t tl_ignore_from; /* allocated() when this thread's window began */

/* -- random draws ------------------------------------------------------------------- */
static uint64_t
rng_next(void)
{
    uint64_t x = S.rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    S.rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static int64_t
draw_countdown(void)
{
    double u = ((double)(rng_next() >> 11) + 1.0) * (1.0 / 9007199254740992.0); /* (0,1] */
    double d = -log(u) * S.interval;
    if (d > 9e18) {
        d = 9e18;
    }
    return (int64_t)d + 1;
}

/* Bytes allocated through the hook while enabled (all threads): exact, at no cost on the
 * hot path, which only moves the countdown. GIL held (the hooked domains need it). */
static inline uint64_t
allocated(void)
{
    return S.allocated + (uint64_t)(S.drawn - S.countdown);
}

/* A new countdown; the bytes the old one counted are kept (only while enabled: a disabled
 * hook counts from INT64_MAX). */
static void
redraw(void)
{
    if (S.enabled) {
        S.allocated = allocated();
    }
    S.countdown = S.drawn = draw_countdown();
}

/* -- live table: open addressing, linear probing, backward-shift deletion ---------- */
static inline size_t
slot_of(uintptr_t ptr)
{
    return (size_t)(((uint64_t)(ptr >> 4) * 0x9E3779B97F4A7C15ULL) >> S.live_shift);
}

static inline size_t
filt_bit(uintptr_t ptr)
{
    return (size_t)(((uint64_t)(ptr >> 4) * 0xC2B2AE3D27D4EB4FULL) >> (64 - HW_FILT_BITS));
}

static inline int
filt_maybe(uintptr_t ptr)
{
    size_t b = filt_bit(ptr);
    return (int)((filt[b >> 6] >> (b & 63)) & 1);
}

static inline void
filt_add(uintptr_t ptr)
{
    size_t b = filt_bit(ptr);
    if (filt_n[b] == 0) {
        filt[b >> 6] |= (uint64_t)1 << (b & 63);
    }
    if (filt_n[b] < UINT16_MAX) {
        filt_n[b]++;
    }
}

static inline void
filt_del(uintptr_t ptr)
{
    size_t b = filt_bit(ptr);
    if (filt_n[b] && filt_n[b] < UINT16_MAX && --filt_n[b] == 0) {
        filt[b >> 6] &= ~((uint64_t)1 << (b & 63));
    }
}

/* Every live sample's bit and count taken back (before the table is emptied): only the
 * counters in use are written, so a forked child copies none of the others' pages. */
static void
filt_clear(void)
{
    for (size_t i = 0; i < S.live_cap; i++) {
        if (S.keys[i]) {
            filt_del(S.keys[i]);
        }
    }
}

static int
live_grow(void)
{
    size_t cap = S.live_cap ? S.live_cap * 2 : 4096;
    unsigned bits = 0;
    while (((size_t)1 << bits) < cap) {
        bits++;
    }
    uintptr_t *k = calloc(cap, sizeof(uintptr_t));
    hw_entry *t = calloc(cap, sizeof(hw_entry));
    if (k == NULL || t == NULL) {
        free(k);
        free(t);
        return 0;
    }
    hw_entry *old = S.live;
    uintptr_t *old_keys = S.keys;
    size_t old_cap = S.live_cap;
    S.keys = k;
    S.live = t;
    S.live_cap = cap;
    S.live_shift = 64 - bits;
    for (size_t i = 0; i < old_cap; i++) {
        if (old_keys[i]) {
            size_t j = slot_of(old_keys[i]);
            while (k[j]) {
                j = (j + 1) & (cap - 1);
            }
            k[j] = old_keys[i];
            t[j] = old[i];
        }
    }
    free(old);
    free(old_keys);
    return 1;
}

/* The slot of ``ptr`` in the live table, or -1. */
static inline Py_ssize_t
live_find(uintptr_t ptr)
{
    size_t mask = S.live_cap - 1;
    for (size_t i = slot_of(ptr);; i = (i + 1) & mask) {
        uintptr_t k = S.keys[i];
        if (k == ptr) {
            return (Py_ssize_t)i;
        }
        if (k == 0) {
            return -1;
        }
    }
}

static void
live_remove_at(size_t i)
{
    size_t mask = S.live_cap - 1;
    S.live[i].stack->live--;
    S.live_count--;
    filt_del(S.keys[i]);
    /* backward shift: pull later entries of the probe run into the hole */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (S.keys[j] == 0) {
            break;
        }
        size_t home = slot_of(S.keys[j]);
        /* move j to i when home is not cyclically in (i, j] */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            S.keys[i] = S.keys[j];
            S.live[i] = S.live[j];
            i = j;
        }
    }
    S.keys[i] = 0;
    S.live[i].ptr = 0;
    S.live[i].stack = NULL;
}

static int
live_insert(uintptr_t ptr, size_t size, double inv_p, hw_stack *st)
{
    if ((S.live_count + 1) * 2 > S.live_cap && !live_grow()) {
        return 0;
    }
    filt_add(ptr);
    size_t mask = S.live_cap - 1;
    size_t i = slot_of(ptr);
    while (S.keys[i] && S.keys[i] != ptr) {
        i = (i + 1) & mask;
    }
    if (S.keys[i] == ptr) { /* a free that was not seen: replace it */
        S.live[i].stack->live--;
        S.live_count--;
        filt_del(ptr);
    }
    S.keys[i] = ptr;
    S.live[i].ptr = ptr;
    S.live[i].size = size;
    S.live[i].inv_p = inv_p;
    S.live[i].stack = st;
    st->live++;
    S.live_count++;
    return 1;
}

/* -- stack table ----------------------------------------------------------------- */
static uint64_t
stack_hash(const hw_frame *f, int n)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)n;
    for (int i = 0; i < n; i++) {
        h = (h ^ (uint64_t)(uintptr_t)f[i].code) * 1099511628211ULL;
        h = (h ^ (uint64_t)(uint32_t)f[i].lasti) * 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

static int
buckets_grow(void)
{
    size_t n = S.nbuckets ? S.nbuckets * 2 : 1024;
    hw_stack **b = calloc(n, sizeof(hw_stack *));
    if (b == NULL) {
        return 0;
    }
    for (size_t i = 0; i < S.nbuckets; i++) {
        hw_stack *s = S.buckets[i];
        while (s) {
            hw_stack *next = s->next;
            size_t k = (size_t)s->hash & (n - 1);
            s->next = b[k];
            b[k] = s;
            s = next;
        }
    }
    free(S.buckets);
    S.buckets = b;
    S.nbuckets = n;
    return 1;
}

static int
same_frames(const hw_frame *a, const hw_frame *b, int n)
{
    for (int i = 0; i < n; i++) { /* field by field: the struct has padding */
        if (a[i].code != b[i].code || a[i].lasti != b[i].lasti) {
            return 0;
        }
    }
    return 1;
}

static hw_stack *
stack_intern(const hw_frame *f, int n)
{
    if ((S.nbuckets == 0 || S.nstacks > S.nbuckets * 2) && !buckets_grow() && S.nbuckets == 0) {
        return NULL;
    }
    uint64_t h = stack_hash(f, n);
    size_t k = (size_t)h & (S.nbuckets - 1);
    for (hw_stack *s = S.buckets[k]; s; s = s->next) {
        if (s->hash == h && s->nframe == (uint32_t)n && same_frames(s->frames, f, n)) {
            return s;
        }
    }
    hw_stack *s = malloc(sizeof(hw_stack) + sizeof(hw_frame) * (size_t)n);
    if (s == NULL) {
        return NULL;
    }
    memset(s, 0, sizeof(hw_stack));
    s->hash = h;
    s->nframe = (uint32_t)n;
    for (int i = 0; i < n; i++) {
        s->frames[i].code = f[i].code;
        s->frames[i].lasti = f[i].lasti;
        Py_INCREF((PyObject *)f[i].code); /* an incref never frees: safe in the hook */
    }
    s->next = S.buckets[k];
    S.buckets[k] = s;
    S.nstacks++;
    return s;
}

/* Unlink every stack no live sample uses (and everything pending) into a private list:
 * pure C, so nothing else can run while the buckets are walked. */
static hw_stack *
collect_dead(int all)
{
    hw_stack *dead = S.pending;
    S.pending = NULL;
    for (size_t i = 0; i < S.nbuckets; i++) {
        hw_stack **pp = &S.buckets[i];
        while (*pp) {
            hw_stack *s = *pp;
            if (all || s->live == 0) {
                *pp = s->next;
                s->next = dead;
                dead = s;
                S.nstacks--;
            }
            else {
                pp = &s->next;
            }
        }
    }
    return dead;
}

/* Drop the references of a private list; a decref may run code that allocates or frees
 * (through the hook), which no longer touches this list. */
static void
release_stacks(hw_stack *s)
{
    while (s) {
        hw_stack *next = s->next;
        for (uint32_t i = 0; i < s->nframe; i++) {
            Py_DECREF((PyObject *)s->frames[i].code);
        }
        free(s);
        s = next;
    }
}

static void
clear_live(void)
{
    filt_clear();
    for (size_t i = 0; i < S.live_cap; i++) {
        if (S.keys[i]) {
            S.live[i].stack->live--;
            S.live[i].ptr = 0;
            S.keys[i] = 0;
        }
    }
    S.live_count = 0;
}

/* -- the hook ---------------------------------------------------------------------- */
static void
sample(void *ptr, size_t size)
{
    if (!S.enabled) {
        S.countdown = S.drawn = INT64_MAX; /* off: the hot path's test fails for ~2^63 bytes */
        return;
    }
    redraw();
    if (tl_busy || tl_ignore) {
        return;
    }
    tl_busy = 1;
    S.samples++;
    if (S.live_count >= S.max_samples) {
        S.dropped++;
        goto out;
    }
    hw_frame buf[HW_MAX_DEPTH];
    int n = hw_read_stack(buf, S.depth);
    hw_stack *st = stack_intern(buf, n);
    if (st == NULL) {
        S.dropped++;
        goto out;
    }
    double p = -expm1(-(double)size / S.interval);
    if (!(p > 0.0)) {
        p = 1e-300;
    }
    if (!live_insert((uintptr_t)ptr, size, 1.0 / p, st)) {
        S.dropped++;
    }
out:
    tl_busy = 0;
}

/* A block about to be freed (or moved) that may be a live sample (its filter bit is set):
 * out of the hot path. */
static void __attribute__((noinline, cold))
forget(uintptr_t ptr)
{
    if (ptr == 0 || S.live_count == 0) {
        return; /* 0 marks an empty slot; and no table without samples */
    }
    Py_ssize_t i = live_find(ptr);
    if (i >= 0) {
        live_remove_at((size_t)i);
    }
}

static void __attribute__((noinline, cold))
forget_and_free(hw_domain *d, void *ptr)
{
    forget((uintptr_t)ptr);
    d->orig.free(d->orig.ctx, ptr);
}

/* The hot paths below only move the countdown (and test a bit, for a block given back) and
 * end in a tail call to the allocator they replaced: no stack frame of their own. The rare
 * rest (a sample is due, or the block may be a live sample) is out of line. */
static void * __attribute__((noinline, cold))
malloc_sampled(hw_domain *d, size_t size)
{
    void *p = d->orig.malloc(d->orig.ctx, size);
    if (p != NULL) { /* a failure leaves the countdown at or below 0: the next one samples */
        sample(p, size);
    }
    return p;
}

static void *
hw_malloc(void *ctx, size_t size)
{
    hw_domain *d = (hw_domain *)ctx;
    if ((S.countdown -= (int64_t)size) > 0) { /* always while disabled */
        return d->orig.malloc(d->orig.ctx, size);
    }
    return malloc_sampled(d, size);
}

static void * __attribute__((noinline, cold))
calloc_sampled(hw_domain *d, size_t nelem, size_t elsize, size_t size)
{
    void *p = d->orig.calloc(d->orig.ctx, nelem, elsize);
    if (p != NULL) {
        sample(p, size);
    }
    return p;
}

static void *
hw_calloc(void *ctx, size_t nelem, size_t elsize)
{
    hw_domain *d = (hw_domain *)ctx;
    size_t size;
    if (__builtin_mul_overflow(nelem, elsize, &size) || size > (size_t)INT64_MAX) {
        return d->orig.calloc(d->orig.ctx, nelem, elsize); /* it refuses: nothing counted */
    }
    if ((S.countdown -= (int64_t)size) > 0) {
        return d->orig.calloc(d->orig.ctx, nelem, elsize);
    }
    return calloc_sampled(d, nelem, elsize, size);
}

/* ``counted``: the countdown already moved by ``size``. The old block is forgotten only once
 * the move succeeded (a failed realloc leaves it live, and tracked). */
static void * __attribute__((noinline, cold))
realloc_slow(hw_domain *d, void *ptr, size_t size, int counted)
{
    void *p = d->orig.realloc(d->orig.ctx, ptr, size);
    if (p == NULL) {
        return NULL;
    }
    forget((uintptr_t)ptr); /* realloc(NULL, n) is a malloc: forget ignores 0 */
    if (!counted) {
        S.countdown -= (int64_t)size;
    }
    if (S.countdown <= 0) {
        sample(p, size);
    }
    return p;
}

static void *
hw_realloc(void *ctx, void *ptr, size_t size)
{
    hw_domain *d = (hw_domain *)ctx;
    if (filt_maybe((uintptr_t)ptr)) {
        return realloc_slow(d, ptr, size, 0);
    }
    if ((S.countdown -= (int64_t)size) > 0) {
        return d->orig.realloc(d->orig.ctx, ptr, size);
    }
    return realloc_slow(d, ptr, size, 1);
}

/* The hot path: one bit tested (see filt), then a tail call either way (no stack frame). */
static void
hw_free(void *ctx, void *ptr)
{
    hw_domain *d = (hw_domain *)ctx;
    if (filt_maybe((uintptr_t)ptr)) {
        forget_and_free(d, ptr);
        return;
    }
    d->orig.free(d->orig.ctx, ptr);
}

/* -- chain management (GIL held) ----------------------------------------------------- */
static int
is_top(hw_domain *d)
{
    PyMemAllocatorEx cur;
    PyMem_GetAllocator(d->domain, &cur);
    return cur.malloc == hw_malloc && cur.ctx == (void *)d;
}

static void
install(hw_domain *d)
{
    PyMemAllocatorEx mine = {(void *)d, hw_malloc, hw_calloc, hw_realloc, hw_free};
    PyMem_GetAllocator(d->domain, &d->orig);
    PyMem_SetAllocator(d->domain, &mine);
    d->installed = 1;
}

/* Whether the hook still sees this domain's allocations: an allocator stopped after it
 * started (tracemalloc.stop() restores what was there before tracemalloc) drops it. */
static int
still_chained(hw_domain *d)
{
    if (!d->installed) {
        return 0;
    }
    if (is_top(d)) {
        return 1;
    }
    /* an 8-byte allocation through the domain moves the countdown if it passes the hook */
    int64_t before = S.countdown;
    void *p = d->domain == PYMEM_DOMAIN_OBJ ? PyObject_Malloc(8) : PyMem_Malloc(8);
    int seen = S.countdown != before;
    if (d->domain == PYMEM_DOMAIN_OBJ) {
        PyObject_Free(p);
    }
    else {
        PyMem_Free(p);
    }
    return seen || p == NULL;
}

/* Make sure the hook is in both chains; forget samples whose frees may have been missed. */
static void
ensure_chained(void)
{
    int lost = 0;
    for (int i = 0; i < 2; i++) {
        hw_domain *d = &g_dom[i];
        if (d->installed && !still_chained(d)) {
            d->installed = 0;
            lost = 1;
            S.reinstalls++;
        }
        if (!d->installed) {
            install(d);
        }
    }
    if (lost) {
        clear_live();
    }
}

static void
atfork_child(void)
{
    /* The child's agent is not running: stop sampling and forget the parent's samples
     * (references are dropped later, under the GIL, by the next start or drain). */
    S.enabled = 0;
    filt_clear();
    free(S.live);
    free(S.keys);
    S.live = NULL;
    S.keys = NULL;
    S.live_cap = 0;
    S.live_count = 0;
    for (size_t i = 0; i < S.nbuckets; i++) {
        hw_stack *s = S.buckets[i];
        while (s) {
            hw_stack *next = s->next;
            s->next = S.pending;
            S.pending = s;
            s = next;
        }
        S.buckets[i] = NULL;
    }
    S.nstacks = 0;
    tl_busy = 0;
}

/* -- Python functions ---------------------------------------------------------------- */
static PyObject *
py_start(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"interval", "depth", "max_samples", NULL};
    double interval = S.interval;
    int depth = S.depth;
    Py_ssize_t max_samples = (Py_ssize_t)S.max_samples;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|din", kwlist, &interval, &depth, &max_samples)) {
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030E0000
    PyErr_SetString(PyExc_RuntimeError, "the sampler does not read this Python's frames yet");
    return NULL;
#endif
    if (!(interval >= 1.0 && interval <= 1e15) || depth < 1 || depth > HW_MAX_DEPTH ||
        max_samples < 1) {
        PyErr_SetString(PyExc_ValueError, "interval >= 1 byte, 1 <= depth <= 64, max_samples >= 1");
        return NULL;
    }
    tl_busy = 1;
    clear_live(); /* before the stacks its entries point to are released */
    release_stacks(collect_dead(1));
    S.interval = interval;
    S.depth = depth;
    S.max_samples = (size_t)max_samples;
    if (S.rng == 0) {
        S.rng = ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&S ^ 0x9E3779B97F4A7C15ULL;
    }
    S.samples = S.dropped = 0;
    redraw(); /* counts what a running sampler counted so far; a new start from here */
    ensure_chained();
    S.enabled = 1;
    tl_busy = 0;
    Py_RETURN_NONE;
}

static PyObject *
py_stop(PyObject *self, PyObject *unused)
{
    int removed = 1;
    S.enabled = 0;
    for (int i = 0; i < 2; i++) {
        hw_domain *d = &g_dom[i];
        if (!d->installed) {
            continue;
        }
        if (is_top(d)) {
            PyMem_SetAllocator(d->domain, &d->orig);
            d->installed = 0;
        }
        else {
            removed = 0; /* another allocator saved it: stays as a pass-through */
        }
    }
    tl_busy = 1;
    clear_live();
    release_stacks(collect_dead(1));
    tl_busy = 0;
    return PyUnicode_FromString(removed ? "removed" : "passthrough");
}

static PyObject *
py_set_interval(PyObject *self, PyObject *arg)
{
    double interval = PyFloat_AsDouble(arg);
    if (interval == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!(interval >= 1.0 && interval <= 1e15)) {
        PyErr_SetString(PyExc_ValueError, "interval must be at least 1 byte");
        return NULL;
    }
    S.interval = interval;
    redraw();
    Py_RETURN_NONE;
}

static PyObject *
py_ignore_thread(PyObject *self, PyObject *arg)
{
    int flag = PyObject_IsTrue(arg);
    if (flag < 0) {
        return NULL;
    }
    int before = tl_ignore;
    if (flag && !before) {
        tl_ignore_from = allocated();
    }
    else if (!flag && before) {
        S.ignored += allocated() - tl_ignore_from;
    }
    tl_ignore = flag;
    return PyBool_FromLong(before);
}

/* allocated() -> int | None: bytes the process allocated through the Python allocators
 * outside ignored windows (the agent's) since the sampler first started, None while it is
 * off. The target's activity: its own CPU time also counts its idle loop's wake-ups. */
static PyObject *
py_allocated(PyObject *self, PyObject *unused)
{
    if (!S.enabled) {
        Py_RETURN_NONE;
    }
    uint64_t now = allocated();
    uint64_t own = S.ignored + (tl_ignore ? now - tl_ignore_from : 0);
    return PyLong_FromUnsignedLongLong(now >= own ? now - own : 0);
}

static PyObject *
frames_tuple(const hw_stack *s)
{
    PyObject *t = PyTuple_New((Py_ssize_t)s->nframe);
    if (t == NULL) {
        return NULL;
    }
    for (uint32_t i = 0; i < s->nframe; i++) {
        PyCodeObject *code = s->frames[i].code;
        PyObject *fr = Py_BuildValue("(Oi)", code->co_filename,
                                     hw_frame_line(code, s->frames[i].lasti));
        if (fr == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, fr);
    }
    return t;
}

static PyObject *
stats_dict(double est_bytes, double est_blocks)
{
    return Py_BuildValue(
        "{s:d,s:i,s:n,s:n,s:K,s:K,s:K,s:d,s:d,s:i,s:i}", "interval", S.interval, "depth",
        S.depth, "live_samples", (Py_ssize_t)S.live_count, "stacks", (Py_ssize_t)S.nstacks,
        "samples", (unsigned long long)S.samples, "dropped", (unsigned long long)S.dropped,
        "reinstalls", (unsigned long long)S.reinstalls, "est_bytes", est_bytes, "est_blocks",
        est_blocks, "enabled", S.enabled, "top",
        g_dom[0].installed && g_dom[1].installed && is_top(&g_dom[0]) && is_top(&g_dom[1]));
}

/* drain() -> ([(frames newest first ((filename, line), ...), est_blocks, est_bytes, n)],
 *             stats). Runs in the agent thread: its own allocations are not sampled, gc
 * is paused while the result is built so no other Python code runs in between. */
static PyObject *
py_drain(PyObject *self, PyObject *unused)
{
    if (!S.enabled) {
        return Py_BuildValue("(NN)", PyList_New(0), stats_dict(0.0, 0.0));
    }
    int busy = tl_busy;
    tl_busy = 1;
    ensure_chained();
    /* pure C: accumulate per stack */
    double tot_bytes = 0.0, tot_blocks = 0.0;
    size_t nlive_stacks = 0;
    for (size_t i = 0; i < S.nbuckets; i++) {
        for (hw_stack *s = S.buckets[i]; s; s = s->next) {
            s->acc_blocks = s->acc_bytes = 0.0;
            s->acc_n = 0;
        }
    }
    for (size_t i = 0; i < S.live_cap; i++) {
        hw_entry *e = &S.live[i];
        if (S.keys[i]) {
            hw_stack *s = e->stack;
            if (s->acc_n == 0) {
                nlive_stacks++;
            }
            s->acc_n++;
            s->acc_blocks += e->inv_p;
            s->acc_bytes += e->inv_p * (double)e->size;
            tot_blocks += e->inv_p;
            tot_bytes += e->inv_p * (double)e->size;
        }
    }
    /* Copy what is needed, then build Python objects with gc paused: no finalizer, so no
     * other thread, can change the tables while they are read. */
    hw_stack **picked = malloc(sizeof(hw_stack *) * (nlive_stacks + 1));
    size_t k = 0;
    if (picked != NULL) {
        for (size_t i = 0; i < S.nbuckets && k < nlive_stacks; i++) {
            for (hw_stack *s = S.buckets[i]; s; s = s->next) {
                if (s->acc_n && k < nlive_stacks) {
                    s->live++; /* pinned: not released while listed */
                    picked[k++] = s;
                }
            }
        }
    }
    int gc_was = PyGC_Disable();
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && i < k; i++) {
        hw_stack *s = picked[i];
        PyObject *frames = frames_tuple(s);
        PyObject *row = frames ? Py_BuildValue("(NddK)", frames, s->acc_blocks, s->acc_bytes,
                                               (unsigned long long)s->acc_n)
                               : NULL;
        if (row == NULL || PyList_Append(out, row) < 0) {
            Py_XDECREF(row);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(row);
    }
    for (size_t i = 0; i < k; i++) {
        picked[i]->live--;
    }
    free(picked);
    PyObject *stats = out ? stats_dict(tot_bytes, tot_blocks) : NULL;
    if (gc_was) {
        PyGC_Enable();
    }
    release_stacks(collect_dead(0));
    tl_busy = busy;
    if (out == NULL || stats == NULL) {
        Py_XDECREF(out);
        Py_XDECREF(stats);
        return NULL;
    }
    return Py_BuildValue("(NN)", out, stats);
}

/* The block that holds a container's items: a dict's keys object, a list's item array, a
 * set's table (NULL when there is none, or it is inside the object). It is reallocated
 * where the container grows, so its sample names the line that adds the items. A split
 * dict's keys are its class's, shared: not its own. */
static void *
storage_of(PyObject *o)
{
    if (PyDict_Check(o)) {
        PyDictObject *d = (PyDictObject *)o;
        return d->ma_values == NULL ? (void *)d->ma_keys : NULL;
    }
    if (PyList_Check(o)) {
        return (void *)((PyListObject *)o)->ob_item;
    }
    if (PyAnySet_Check(o)) {
        PySetObject *so = (PySetObject *)o;
        return so->table != so->smalltable ? (void *)so->table : NULL;
    }
    return NULL;
}

/* The separate block an object keeps its data in, when it has one: a bytearray's buffer, or
 * a container's storage. It is usually far larger than the object itself (a 4 KiB buffer
 * behind a 56-byte header), so it is sampled far more often, and it was allocated (or last
 * grown) by the same code. */
static void *
payload_of(PyObject *o)
{
    if (PyByteArray_Check(o)) {
        PyByteArrayObject *b = (PyByteArrayObject *)o;
        return b->ob_alloc > 0 ? (void *)b->ob_bytes : NULL;
    }
    return storage_of(o);
}

/* lookup(objects) -> [frames or None]: the sampled stack of each object's block (or of
 * the block it starts, for objects with a pre-header), when that block was sampled; else
 * of its data block (payload_of), when that one was. */
static PyObject *
py_lookup(PyObject *self, PyObject *seq)
{
    PyObject *fast = PySequence_Fast(seq, "lookup() takes a sequence of objects");
    if (fast == NULL) {
        return NULL;
    }
    int busy = tl_busy;
    tl_busy = 1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(fast, i);
        uintptr_t ptr = (uintptr_t)o - hw_preheader_size(o);
        Py_ssize_t slot = S.enabled && S.live_count ? live_find(ptr) : -1;
        if (slot < 0 && S.enabled && S.live_count) {
            void *data = payload_of(o);
            slot = data != NULL ? live_find((uintptr_t)data) : -1;
        }
        hw_entry *e = slot >= 0 ? &S.live[slot] : NULL;
        PyObject *v;
        if (e != NULL) {
            hw_stack *s = e->stack;
            s->live++; /* frames_tuple allocates: keep the record while it reads it */
            v = frames_tuple(s);
            s->live--;
            if (v == NULL) {
                Py_CLEAR(out);
                break;
            }
        }
        else {
            v = Py_NewRef(Py_None);
        }
        PyList_SET_ITEM(out, i, v);
    }
    tl_busy = busy;
    Py_DECREF(fast);
    return out;
}

/* storage(container) -> frames or None: the sampled stack of the block holding its items. */
static PyObject *
py_storage(PyObject *self, PyObject *o)
{
    void *block = storage_of(o);
    Py_ssize_t slot = block != NULL && S.enabled && S.live_count ? live_find((uintptr_t)block)
                                                                 : -1;
    if (slot < 0) {
        Py_RETURN_NONE;
    }
    int busy = tl_busy;
    tl_busy = 1;
    hw_stack *s = S.live[slot].stack;
    s->live++;
    PyObject *v = frames_tuple(s);
    s->live--;
    tl_busy = busy;
    return v;
}

static PyObject *
py_stats(PyObject *self, PyObject *unused)
{
    return stats_dict(-1.0, -1.0);
}

/* after_fork_child (GIL held, in the child): drop the references the fork left (only
 * those: an agent started by an earlier after-fork hook may already be sampling). */
static void
after_fork_child(void)
{
    hw_stack *left = S.pending;
    S.pending = NULL;
    int busy = tl_busy;
    tl_busy = 1;
    release_stacks(left);
    tl_busy = busy;
}

/* fini (GIL held, module freed): unhook where it is the top of the chain; elsewhere it
 * stays a pass-through (its code stays mapped: a loaded extension is never unloaded). */
static void
fini(void)
{
    S.enabled = 0;
    for (int i = 0; i < 2; i++) {
        if (g_dom[i].installed && is_top(&g_dom[i])) {
            PyMem_SetAllocator(g_dom[i].domain, &g_dom[i].orig);
            g_dom[i].installed = 0;
        }
    }
}

static PyMethodDef sampler_methods[] = {
    {"sampler_start", (PyCFunction)(void (*)(void))py_start, METH_VARARGS | METH_KEYWORDS,
     "sampler_start(interval=524288, depth=16, max_samples=200000): install the hook (or "
     "re-enable it) and sample every ~interval bytes."},
    {"sampler_stop", py_stop, METH_NOARGS,
     "sampler_stop() -> 'removed' | 'passthrough': stop sampling, drop all samples."},
    {"sampler_set_interval", py_set_interval, METH_O, "Change the mean sampling interval."},
    {"sampler_ignore_thread", py_ignore_thread, METH_O,
     "sampler_ignore_thread(flag) -> previous flag: whether the calling thread's "
     "allocations are left unsampled."},
    {"sampler_drain", py_drain, METH_NOARGS,
     "Live sampled stacks with estimated blocks and bytes, and the sampler's figures."},
    {"sampler_lookup", py_lookup, METH_O,
     "The sampled stack of each object's memory block, or None."},
    {"sampler_stats", py_stats, METH_NOARGS, "The sampler's counters."},
    {"sampler_allocated", py_allocated, METH_NOARGS,
     "Bytes allocated outside ignored threads' windows since the first start; None when off."},
    {"sampler_storage", py_storage, METH_O,
     "The sampled stack of the block holding a dict's, list's or set's items, or None."},
    {NULL, NULL, 0, NULL},
};

const hw_job hw_job_sampler = {
    .name = "sampler",
    .methods = sampler_methods,
    .fork_child = atfork_child,
    .after_fork_child = after_fork_child,
    .fini = fini,
};
