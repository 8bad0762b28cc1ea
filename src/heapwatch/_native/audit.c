/* audit.c — the audit job: note the temp files and directories the target creates, as
 * the interpreter reports them in the audit events "open" (with O_CREAT) and "os.mkdir"
 * (PEP 578), with a hook written in C.
 *
 * Why C: CPython calls every audit hook for every audit event of every thread, and
 * id() alone raises "builtins.id". A hook in Python runs Python code on each one: it made
 * copy.deepcopy 2-3.7x slower, and put a switch point for the GIL inside C calls of the
 * target (and of the agent). This hook is called the same way but returns after one
 * byte compare for every event whose name does not start with 'o'.
 *
 * Invariants of hook() (what CPython calls):
 *   - Called with the GIL of the calling thread's interpreter held, in any thread, for
 *     every audit event, from installation to the end of the process: hooks cannot be
 *     removed. After audit_stop() (and in a forked child until audit_watch() is called
 *     again) it returns at its second test.
 *   - Runs no Python code, ever. The event name is compared in C; the flags are read
 *     from an int (or int subclass) by PyLong_AsLongAndOverflow, which never calls
 *     __index__ on one; a path is used only when it is a str or bytes (or a subclass),
 *     whose data is read with the C API's macros — never __fspath__, __hash__, __eq__ or
 *     any other method of the target's objects; what is kept is an exact str or bytes
 *     copy, added to an exact set of exact str (or one of exact bytes: never both in one
 *     set, as comparing them warns under `python -b`), whose hashing and compare are C.
 *   - Never raises: it returns 0 always (a hook that returns -1 aborts the target's
 *     operation). An error of its own (MemoryError) is cleared and the path dropped.
 *     CPython saves the caller's pending exception around the hooks.
 *   - Allocates only for an event it records (one copy of the path, a set resize with
 *     PyMem): "open" with O_CREAT or "os.mkdir", the watch active, in the main
 *     interpreter, not in one of the agent's threads, a path under a temp root. str and
 *     bytes are not gc-tracked: their allocation never starts a collection, so no
 *     finalizer or weakref callback runs.
 *   - Touches the shared state only in the main interpreter: since 3.12 a subinterpreter
 *     may run with its own GIL at the same time. Other interpreters read `active` (an
 *     atomic) and the constant `main_interp`, nothing else.
 *
 * The other functions (audit_watch, audit_stop, the fork and fini hooks) run with the
 * main interpreter's GIL held, except fork_child (raw: no Python C API, no malloc).
 */
#include "jobs.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>

#define MAX_IGNORED_THREADS 16
#define PROBE_EVENT "heapwatch.audit.probe"

static atomic_int active;      /* 0: the hook records nothing */
static int installed;          /* PySys_AddAuditHook called and our hook seen running */
static int refused;            /* the interpreter did not take it: never asked again */
static int probing, probe_seen;
static PyInterpreterState *main_interp;
/* Strong references while watching, NULL otherwise. */
static PyObject *pending_str;   /* set of exact str: the paths given as str */
static PyObject *pending_bytes; /* set of exact bytes: the paths given as bytes */
static PyObject *roots_str;     /* tuple of exact str, each ending with a separator */
static PyObject *roots_bytes;   /* the same roots, encoded by the agent */
static Py_ssize_t limit;        /* at most this many pending paths */
static unsigned long ignored[MAX_IGNORED_THREADS];
static int n_ignored;

static int
under_str_root(PyObject *path)
{
    Py_ssize_t n = PyTuple_GET_SIZE(roots_str);
    for (Py_ssize_t i = 0; i < n; i++) {
        /* C only, also on a str subclass: reads both strings' data */
        Py_ssize_t r = PyUnicode_Tailmatch(path, PyTuple_GET_ITEM(roots_str, i), 0,
                                           PY_SSIZE_T_MAX, -1);
        if (r < 0) {
            PyErr_Clear();
            return 0;
        }
        if (r) {
            return 1;
        }
    }
    return 0;
}

static int
under_bytes_root(PyObject *path)
{
    const char *p = PyBytes_AS_STRING(path);
    Py_ssize_t len = PyBytes_GET_SIZE(path);
    Py_ssize_t n = PyTuple_GET_SIZE(roots_bytes);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *root = PyTuple_GET_ITEM(roots_bytes, i);
        Py_ssize_t rlen = PyBytes_GET_SIZE(root);
        if (rlen <= len && memcmp(p, PyBytes_AS_STRING(root), (size_t)rlen) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The path of a recorded event, as a new exact str or bytes; NULL (no error set) when it
 * is of another type or not under a temp root. */
static PyObject *
copy_if_temp(PyObject *path, PyObject **into)
{
    if (PyUnicode_Check(path)) {
        if (!under_str_root(path)) {
            return NULL;
        }
        *into = pending_str;
        return PyUnicode_FromKindAndData(PyUnicode_KIND(path), PyUnicode_DATA(path),
                                         PyUnicode_GET_LENGTH(path));
    }
    if (PyBytes_Check(path)) {
        if (!under_bytes_root(path)) {
            return NULL;
        }
        *into = pending_bytes;
        return PyBytes_FromStringAndSize(PyBytes_AS_STRING(path), PyBytes_GET_SIZE(path));
    }
    return NULL; /* an fd, or anything else: never asked for its __fspath__ */
}

static int
is_ignored_thread(void)
{
    unsigned long me = PyThread_get_thread_ident();
    for (int i = 0; i < n_ignored; i++) {
        if (ignored[i] == me) {
            return 1;
        }
    }
    return 0;
}

static void
record(const char *event, PyObject *args)
{
    int is_open = strcmp(event, "open") == 0;
    if (!is_open && strcmp(event, "os.mkdir") != 0) {
        return;
    }
    if (PyInterpreterState_Get() != main_interp || pending_str == NULL
        || !PyTuple_Check(args) || PyTuple_GET_SIZE(args) < (is_open ? 3 : 1)) {
        return;
    }
    if (is_open) { /* ("open", path, mode, flags) */
        PyObject *flags = PyTuple_GET_ITEM(args, 2);
        int overflow = 0;
        long f = PyLong_Check(flags) ? PyLong_AsLongAndOverflow(flags, &overflow) : 0;
        if (f == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return;
        }
        if (overflow || !(f & O_CREAT)) {
            return;
        }
    }
    if (is_ignored_thread()) {
        return;
    }
    if (PySet_GET_SIZE(pending_str) + PySet_GET_SIZE(pending_bytes) >= limit) {
        return; /* the agent drains the sets at each snapshot */
    }
    PyObject *into = NULL;
    PyObject *copy = copy_if_temp(PyTuple_GET_ITEM(args, 0), &into);
    if (copy == NULL) {
        PyErr_Clear(); /* a MemoryError of the copy: the path is dropped */
        return;
    }
    if (PySet_Add(into, copy) < 0) {
        PyErr_Clear();
    }
    Py_DECREF(copy);
}

static int
hook(const char *event, PyObject *args, void *unused)
{
    if (event[0] != 'o') {
        if (probing && strcmp(event, PROBE_EVENT) == 0) {
            probe_seen = 1;
        }
        return 0;
    }
    if (!atomic_load_explicit(&active, memory_order_relaxed)) {
        return 0;
    }
    record(event, args);
    return 0;
}

/* GIL held. Adds the hook once; whether it runs is checked with an event of our own, as
 * PySys_AddAuditHook returns 0 also when an existing hook refused it with a RuntimeError.
 * Returns 1 when the hook runs, 0 when it does not (and never will: not asked again). */
static int
install(void)
{
    if (installed || refused) {
        return installed;
    }
    main_interp = PyInterpreterState_Main();
    if (PySys_AddAuditHook(hook, NULL) < 0) {
        PyErr_Clear();
        refused = 1;
        return 0;
    }
    probing = 1;
    probe_seen = 0;
    if (PySys_Audit(PROBE_EVENT, NULL) < 0) {
        PyErr_Clear(); /* a hook of the target's refused our event: it ran before ours */
    }
    probing = 0;
    installed = probe_seen;
    refused = !installed;
    return installed;
}

static void
drop_state(void)
{
    atomic_store(&active, 0);
    Py_CLEAR(pending_str);
    Py_CLEAR(pending_bytes);
    Py_CLEAR(roots_str);
    Py_CLEAR(roots_bytes);
    n_ignored = 0;
}

static int
exact_items(PyObject *tuple, int want_str)
{
    Py_ssize_t n = PyTuple_GET_SIZE(tuple);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(tuple, i);
        if (want_str ? !PyUnicode_CheckExact(item) : !PyBytes_CheckExact(item)) {
            PyErr_SetString(PyExc_TypeError, "roots must be tuples of exact str and bytes");
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(audit_watch_doc,
"audit_watch(pending_str, pending_bytes, roots_str, roots_bytes, ignore_threads, limit)\n\
-> bool\n\
\n\
Start (or update) noting the temp entries this process creates: the paths of \"open\"\n\
events with O_CREAT and of \"os.mkdir\" events under one of the roots, made by a thread\n\
not in ignore_threads (idents, at most 16), go into pending_str (paths given as str) or\n\
pending_bytes (as bytes), exact sets the caller owns and drains, up to limit paths in\n\
all. The hook is added to the interpreter at the first call. Returns False when the\n\
interpreter does not run it (another audit hook refused it): nothing is noted then.");

static PyObject *
audit_watch(PyObject *self, PyObject *args)
{
    PyObject *pstr, *pbytes, *rstr, *rbytes, *threads;
    Py_ssize_t lim;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!n:audit_watch", &PySet_Type, &pstr, &PySet_Type,
                          &pbytes, &PyTuple_Type, &rstr, &PyTuple_Type, &rbytes,
                          &PyTuple_Type, &threads, &lim)) {
        return NULL;
    }
    if (!PySet_CheckExact(pstr) || !PySet_CheckExact(pbytes) || pstr == pbytes) {
        PyErr_SetString(PyExc_TypeError, "pending_str and pending_bytes must be two sets");
        return NULL;
    }
    if (exact_items(rstr, 1) < 0 || exact_items(rbytes, 0) < 0) {
        return NULL;
    }
    Py_ssize_t nthreads = PyTuple_GET_SIZE(threads);
    if (nthreads > MAX_IGNORED_THREADS) {
        PyErr_Format(PyExc_ValueError, "at most %d ignored threads", MAX_IGNORED_THREADS);
        return NULL;
    }
    unsigned long idents[MAX_IGNORED_THREADS];
    for (Py_ssize_t i = 0; i < nthreads; i++) {
        idents[i] = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(threads, i));
        if (idents[i] == (unsigned long)-1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (!install()) {
        Py_RETURN_FALSE;
    }
    /* No Python code runs from here to the end: the hook sees the old state or the new. */
    atomic_store(&active, 0);
    Py_INCREF(pstr);
    Py_XSETREF(pending_str, pstr);
    Py_INCREF(pbytes);
    Py_XSETREF(pending_bytes, pbytes);
    Py_INCREF(rstr);
    Py_XSETREF(roots_str, rstr);
    Py_INCREF(rbytes);
    Py_XSETREF(roots_bytes, rbytes);
    memcpy(ignored, idents, (size_t)nthreads * sizeof(idents[0]));
    n_ignored = (int)nthreads;
    limit = lim;
    atomic_store(&active, 1);
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(audit_stop_doc,
"audit_stop() -> None\n\
\n\
Stop noting temp entries and let go of the sets and roots. The hook stays in the\n\
interpreter (hooks cannot be removed) and returns at its second test.");

static PyObject *
audit_stop(PyObject *self, PyObject *unused)
{
    drop_state();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(audit_state_doc,
"audit_state() -> (installed, active)\n\
\n\
Whether the hook runs in this interpreter, and whether it notes paths now.");

static PyObject *
audit_state(PyObject *self, PyObject *unused)
{
    return Py_BuildValue("(OO)", installed ? Py_True : Py_False,
                         atomic_load(&active) ? Py_True : Py_False);
}

static PyMethodDef audit_methods[] = {
    {"audit_watch", audit_watch, METH_VARARGS, audit_watch_doc},
    {"audit_stop", audit_stop, METH_NOARGS, audit_stop_doc},
    {"audit_state", audit_state, METH_NOARGS, audit_state_doc},
    {NULL, NULL, 0, NULL},
};

/* pthread_atfork, in the child: no Python C API. What the parent created is the
 * parent's: nothing is noted until the child's agent calls audit_watch again. */
static void
audit_fork_child(void)
{
    atomic_store(&active, 0);
}

/* In the child, GIL held: forget the parent's paths, threads and roots. */
static void
audit_after_fork_child(void)
{
    if (pending_str != NULL) {
        PySet_Clear(pending_str);
    }
    if (pending_bytes != NULL) {
        PySet_Clear(pending_bytes);
    }
    drop_state();
}

/* GIL held, when the module is freed: the hook stays (it cannot be removed; the shared
 * object is never unloaded) and records nothing more. */
static void
audit_fini(void)
{
    drop_state();
}

const hw_job hw_job_audit = {
    .name = "audit",
    .methods = audit_methods,
    .fork_child = audit_fork_child,
    .after_fork_child = audit_after_fork_child,
    .fini = audit_fini,
};
