/* gcwalk.h — visiting every object the cyclic gc tracks, version by version (gcwalk.c). */
#ifndef HEAPWATCH_NATIVE_GCWALK_H
#define HEAPWATCH_NATIVE_GCWALK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Called once per object; returns 1 to go on, 0 to stop. It gets a borrowed reference
 * and must not allocate Python objects, run Python code, release the GIL or change any
 * reference count (gc lists must stay as they are during the walk). */
typedef int (*hw_gc_visitor)(PyObject *op, void *arg);

/* NULL when hw_gc_walk can be used in this process, else why not (a static string).
 * GIL held; may allocate (it probes the interpreter's gc lists with a fresh object). */
const char *hw_gc_walk_check(void);

/* Visit the objects of every gc generation (not the permanent generation of gc.freeze(),
 * exactly the objects gc.get_objects() returns), youngest generation first. GIL held;
 * the caller must have disabled the gc (PyGC_Disable) and checked hw_gc_walk_check(). */
void hw_gc_walk(hw_gc_visitor visit, void *arg);

#endif /* HEAPWATCH_NATIVE_GCWALK_H */
