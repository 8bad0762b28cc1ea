/* jobs.h — how a job (one C file, one task) plugs into heapwatch._native.
 *
 * A job is one `hw_job` value, defined in its own .c file. To add one:
 *   1. write src/heapwatch/_native/<name>.c defining `const hw_job hw_job_<name> = {...};`
 *      (setup.py compiles every .c file in this directory);
 *   2. add `X(<name>)` to HW_JOBS below.
 * module.c then adds the job's methods to the module, runs its hooks in list order
 * (teardown in reverse order) and lists its name in `_native.JOBS`. Nothing else changes.
 *
 * Hook invariants (each job restates what its own hooks do):
 *   init             GIL held, at import. May allocate and run Python code (imports).
 *                    Returns 0, or -1 with an exception set (the import then fails, so a
 *                    job should rather record why it is unavailable and return 0).
 *   fork_prepare     pthread_atfork handlers, around fork() of any thread. Called in the
 *   fork_parent      forking thread, with or without the GIL. No Python C API, no malloc:
 *   fork_child       take/release the job's own C locks, reset raw state in the child.
 *   after_fork_child GIL held, in the child, from os.register_at_fork(after_in_child=...):
 *                    after Python's own state is reset. May use the C API; must not raise
 *                    (it returns nothing: clear any error it causes).
 *   fini             GIL held, when the module is freed (interpreter shutdown, or a
 *                    failed import: then possibly without init having run). Must leave
 *                    the process safe without the job (e.g. unhook an allocator).
 * Any hook may be NULL; `methods` may be NULL or a {NULL}-terminated PyMethodDef table.
 */
#ifndef HEAPWATCH_NATIVE_JOBS_H
#define HEAPWATCH_NATIVE_JOBS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct hw_job {
    const char *name;
    PyMethodDef *methods;
    int (*init)(PyObject *module);
    void (*fork_prepare)(void);
    void (*fork_parent)(void);
    void (*fork_child)(void);
    void (*after_fork_child)(void);
    void (*fini)(void);
} hw_job;

/* One X(name) per job, in init order. */
#define HW_JOBS(X) \
    X(census) \
    X(sampler) \
    X(audit) \
    X(attrs) \
    X(procfs)

#define HW_DECLARE_JOB(name) extern const hw_job hw_job_##name;
HW_JOBS(HW_DECLARE_JOB)
#undef HW_DECLARE_JOB

#endif /* HEAPWATCH_NATIVE_JOBS_H */
