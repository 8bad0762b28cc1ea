/* gcwalk.c — visit every gc-tracked object, version by version.
 *
 * 3.12+: PyUnstable_GC_VisitObjects (public, unstable API).
 * 3.10, 3.11: there is no API, so this walks the interpreter's generation lists through
 * CPython's internal headers (struct _gc_runtime_state inside PyInterpreterState). Their
 * layout is private and only guaranteed within one build, so hw_gc_walk_check() first
 * proves it in this very process: the state's generation0 pointer must be generation 0's
 * list head, and a fresh object must sit at the tail of that list. If not, the census
 * reports itself unavailable and heapwatch uses its pure-Python core.
 *
 * Invariants: GIL held throughout, never released; no Python code runs; the walk itself
 * allocates nothing and touches no reference count (3.12+'s API increments and decrements
 * around each callback, never reaching zero).
 */
/* The internal headers need Py_BUILD_CORE, defined before Python.h in this file only. */
#include <patchlevel.h>
#if PY_VERSION_HEX < 0x030C0000
#  define Py_BUILD_CORE 1
#endif
#include "gcwalk.h"

#if PY_VERSION_HEX < 0x030C0000
#  include <internal/pycore_interp.h>

static const char *check_result = "not checked";
static int checked = 0;

static struct _gc_runtime_state *
gc_state(void)
{
    return &PyInterpreterState_Get()->gc;
}

const char *
hw_gc_walk_check(void)
{
    if (checked) {
        return check_result;
    }
    struct _gc_runtime_state *gcs = gc_state();
    if (gcs->generation0 != &gcs->generations[0].head) {
        check_result = "the interpreter's gc state does not have the layout this build expects";
        checked = 1;
        return check_result;
    }
    PyObject *probe = PyList_New(0); /* tracked at once, linked at generation 0's tail */
    if (probe == NULL) {
        PyErr_Clear();
        return "could not allocate a probe object"; /* not cached: try again next time */
    }
    PyGC_Head *g = _Py_AS_GC(probe);
    PyGC_Head *head = gcs->generation0;
    int ok = _PyGCHead_NEXT(g) == head && _PyGCHead_PREV(head) == g;
    Py_DECREF(probe);
    check_result = ok ? NULL
                      : "a fresh object is not where this build expects it in the gc lists";
    checked = 1;
    return check_result;
}

void
hw_gc_walk(hw_gc_visitor visit, void *arg)
{
    struct _gc_runtime_state *gcs = gc_state();
    for (int i = 0; i < NUM_GENERATIONS; i++) {
        PyGC_Head *head = &gcs->generations[i].head;
        for (PyGC_Head *g = _PyGCHead_NEXT(head); g != head; g = _PyGCHead_NEXT(g)) {
            if (!visit((PyObject *)(g + 1), arg)) {
                return;
            }
        }
    }
}

#else /* 3.12 and later */

const char *
hw_gc_walk_check(void)
{
    return NULL;
}

void
hw_gc_walk(hw_gc_visitor visit, void *arg)
{
    PyUnstable_GC_VisitObjects(visit, arg);
}

#endif
