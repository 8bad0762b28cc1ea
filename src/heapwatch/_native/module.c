/* module.c — heapwatch._native: the module object, the job registry, fork hooks and the
 * version check. No job logic lives here: each job is its own file (see jobs.h).
 *
 * Invariants:
 *   - PyInit__native runs with the GIL held, at import; it may allocate and run Python
 *     code (it imports `os` to register the after-fork hook).
 *   - It refuses to load (ImportError) into an interpreter of another minor version than
 *     the one it was compiled for: the agent may be injected into any Python, and a C
 *     extension built for one minor version must never run in another. heapwatch's loader
 *     (agent/core.py) checks the same before importing, and falls back to pure Python.
 *   - The pthread_atfork handlers call only the jobs' raw C hooks: no Python C API.
 *   - Single-phase initialisation: one copy per process, as the state of its jobs (an
 *     allocator hook, say) is per process too.
 */
#include "jobs.h"

#include <pthread.h>

#define HW_STR2(x) #x
#define HW_STR(x) HW_STR2(x)

#define HW_LIST_JOB(name) &hw_job_##name,
static const hw_job *const jobs[] = {HW_JOBS(HW_LIST_JOB) NULL};
#undef HW_LIST_JOB
#define NJOBS (sizeof(jobs) / sizeof(jobs[0]) - 1)

static void
each_fork_prepare(void)
{
    /* reverse order, as locks are taken: the parent and child handlers release forward */
    for (size_t n = NJOBS; n-- > 0;) {
        if (jobs[n]->fork_prepare != NULL) {
            jobs[n]->fork_prepare();
        }
    }
}

static void
each_fork_parent(void)
{
    for (size_t i = 0; jobs[i] != NULL; i++) {
        if (jobs[i]->fork_parent != NULL) {
            jobs[i]->fork_parent();
        }
    }
}

static void
each_fork_child(void)
{
    for (size_t i = 0; jobs[i] != NULL; i++) {
        if (jobs[i]->fork_child != NULL) {
            jobs[i]->fork_child();
        }
    }
}

/* _native._after_fork_child(): registered with os.register_at_fork; GIL held. */
static PyObject *
after_fork_child(PyObject *self, PyObject *unused)
{
    for (size_t i = 0; jobs[i] != NULL; i++) {
        if (jobs[i]->after_fork_child != NULL) {
            jobs[i]->after_fork_child();
            PyErr_Clear();
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"_after_fork_child", after_fork_child, METH_NOARGS,
     "Reset every job's state in a forked child (registered with os.register_at_fork)."},
    {NULL, NULL, 0, NULL},
};

static void
module_free(void *module)
{
    for (size_t n = NJOBS; n-- > 0;) { /* teardown in reverse order of init */
        if (jobs[n]->fini != NULL) {
            jobs[n]->fini();
        }
    }
}

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "heapwatch._native",
    .m_doc = "heapwatch's native core. Use it through heapwatch.agent.core, never directly.",
    .m_size = -1,
    .m_methods = module_methods,
    .m_free = module_free,
};

/* The minor version this interpreter runs, from the runtime (not from the headers). */
static long
runtime_minor_hex(void)
{
#if PY_VERSION_HEX >= 0x030B0000
    return (long)((Py_Version >> 16) & 0xFFFF);
#else
    /* Py_GetVersion() starts with "3.10.13 (...": major and minor up to the second dot */
    const char *v = Py_GetVersion();
    long major = 0, minor = 0;
    while (*v >= '0' && *v <= '9') {
        major = major * 10 + (*v++ - '0');
    }
    if (*v++ != '.') {
        return -1;
    }
    while (*v >= '0' && *v <= '9') {
        minor = minor * 10 + (*v++ - '0');
    }
    return (major << 8) | minor;
#endif
}

static int
register_after_fork(PyObject *module)
{
    int wanted = 0;
    for (size_t i = 0; jobs[i] != NULL; i++) {
        wanted |= jobs[i]->after_fork_child != NULL;
    }
    if (!wanted) {
        return 0;
    }
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL) {
        return -1;
    }
    PyObject *reg = PyObject_GetAttrString(os, "register_at_fork");
    Py_DECREF(os);
    if (reg == NULL) {
        PyErr_Clear(); /* no fork on this platform: nothing to reset */
        return 0;
    }
    PyObject *fn = PyObject_GetAttrString(module, "_after_fork_child");
    PyObject *args = fn ? PyTuple_New(0) : NULL;
    PyObject *kwargs = args ? Py_BuildValue("{s:O}", "after_in_child", fn) : NULL;
    PyObject *res = kwargs ? PyObject_Call(reg, args, kwargs) : NULL;
    Py_XDECREF(fn);
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    Py_DECREF(reg);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

PyMODINIT_FUNC
PyInit__native(void)
{
    static int atfork_done = 0;
    long built = (PY_VERSION_HEX >> 16) & 0xFFFF;
    long running = runtime_minor_hex();
    if (running != built) {
        PyErr_Format(PyExc_ImportError,
                     "heapwatch._native was built for Python %d.%d, not for this %s",
                     PY_MAJOR_VERSION, PY_MINOR_VERSION, Py_GetVersion());
        return NULL;
    }
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL) {
        return NULL;
    }
    PyObject *names = PyList_New(0);
    if (names == NULL) {
        goto error;
    }
    for (size_t i = 0; jobs[i] != NULL; i++) {
        const hw_job *job = jobs[i];
        if (job->methods != NULL && PyModule_AddFunctions(m, job->methods) < 0) {
            goto error;
        }
        if (job->init != NULL && job->init(m) < 0) {
            goto error;
        }
        PyObject *name = PyUnicode_FromString(job->name);
        int failed = name == NULL || PyList_Append(names, name) < 0;
        Py_XDECREF(name);
        if (failed) {
            goto error;
        }
    }
    PyObject *job_names = PyList_AsTuple(names);
    Py_CLEAR(names);
    if (job_names == NULL || PyModule_AddObject(m, "JOBS", job_names) < 0) {
        Py_XDECREF(job_names);
        goto error;
    }
    if (PyModule_AddStringConstant(m, "BUILT_FOR",
                                   HW_STR(PY_MAJOR_VERSION) "." HW_STR(PY_MINOR_VERSION)) < 0) {
        goto error;
    }
    if (register_after_fork(m) < 0) {
        goto error;
    }
    if (!atfork_done) {
        if (pthread_atfork(each_fork_prepare, each_fork_parent, each_fork_child) != 0) {
            PyErr_SetString(PyExc_ImportError, "heapwatch._native: pthread_atfork failed");
            goto error;
        }
        atfork_done = 1;
    }
    return m;

error:
    Py_XDECREF(names);
    Py_DECREF(m);
    return NULL;
}
