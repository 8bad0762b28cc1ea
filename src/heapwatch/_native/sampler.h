/* heapwatch._native: the sampling allocation profiler (sampler.c, frames.c).
 *
 * A hook installed with PyMem_SetAllocator on the OBJ and MEM domains (never RAW: RAW is
 * called without the GIL and receives pymalloc's large blocks, so hooking it too would
 * count them twice). It chains to the allocator it replaced, so tracemalloc and memray
 * keep working whether they start before or after it.
 *
 * Sampling is Poisson by bytes: after each sample the next one is drawn Exp(T) bytes of
 * allocation later (T = the mean interval). A block of size s is sampled with probability
 * p = 1 - exp(-s/T) and stands for 1/p blocks and s/p bytes. A sampled block gets a short
 * Python stack, (code object, instruction offset) per frame, read straight from the
 * interpreter's frame structures (frames.c, per CPython version): no frame object is
 * created and nothing is allocated through Python, so no collection can run inside the
 * hook. Sampled blocks stay in a live table until they are freed (or reallocated).
 *
 * What the hook may do (it runs inside every Python allocation):
 *   - call the allocator it replaced; malloc/free of the C library for its own tables;
 *   - read thread state and frame structures (borrowed, under the GIL);
 *   - Py_INCREF a code object it keeps in a stack record (never a decref: a decref can
 *     free, and a free inside the allocator can run arbitrary code);
 * nothing else: no Python object is created, no exception set, no lock taken.
 * Everything that may allocate or drop a reference (turning code objects into file:line,
 * releasing stack records no live sample uses) runs in the drain, called from the agent
 * thread with the GIL held and this thread's sampling suspended.
 *
 * Thread safety: the OBJ and MEM domains are only called with the GIL held, and the
 * drain holds it too, so the GIL serializes every access to the tables. Re-entrancy: a
 * thread-local flag stops an allocation made while sampling or draining from being
 * sampled. Fork: the child drops the parent's samples (pthread_atfork) and stops
 * sampling until an agent in the child starts it again (the job's fork_child hook:
 * no Python API there; the references are dropped by after_fork_child, GIL held). Stop: the hook is removed from a
 * domain when it is still the top of that domain's chain; otherwise it stays as a
 * pass-through (an allocator installed after it has saved it and will call it).
 */
#ifndef HEAPWATCH_SAMPLER_H
#define HEAPWATCH_SAMPLER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define HW_MAX_DEPTH 64

typedef struct {
    PyCodeObject *code; /* strong reference, taken in the hook, dropped at drain */
    int32_t lasti;      /* instruction offset in code units (-1: not started) */
} hw_frame;

/* frames.c: fill ``out`` with up to ``max`` frames of the current thread, newest first.
 * Allocates nothing, takes no reference, sets no exception. Returns the count. */
int hw_read_stack(hw_frame *out, int max);

/* frames.c: the line of an instruction offset (drain time only: may compute a table). */
int hw_frame_line(PyCodeObject *code, int32_t lasti);

/* frames.c: bytes before an object's address that belong to its block (the gc header and,
 * on 3.11+, the managed dict/weakref pre-header). */
size_t hw_preheader_size(PyObject *obj);

/* sampler.c defines the job hw_job_sampler (jobs.h): its methods sampler_*, the fork
 * hooks and fini. */

#endif
