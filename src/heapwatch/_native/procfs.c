/* procfs.c — the process's open descriptors, read in one call with the GIL released once.
 *
 * In Python, listing /proc/self/fd and reading each link is one system call per
 * descriptor, and each releases the GIL: on a busy target the agent then waits for the GIL
 * again after every one (up to the 5 ms switch interval), and the target's thread is made
 * to hand it over as often. Here the whole listing runs without the GIL, and the GIL is
 * taken back once.
 *
 * Invariants: the GIL is released only around opendir/readdir/readlink/closedir, which touch
 * no Python object; the results are gathered in malloc'd C memory and turned into Python
 * objects after the GIL is back. No Python code runs.
 */
#include "jobs.h"

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *buf;   /* the link targets, each NUL-terminated */
    size_t len, cap;
    size_t count; /* descriptors listed */
    size_t links; /* link targets read */
    int failed;   /* opendir failed, or no memory */
} fd_list;

static int
fd_list_add(fd_list *l, const char *s, size_t n)
{
    if (l->len + n + 1 > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        while (cap < l->len + n + 1) {
            cap *= 2;
        }
        char *b = realloc(l->buf, cap);
        if (b == NULL) {
            return -1;
        }
        l->buf = b;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, s, n);
    l->buf[l->len + n] = '\0';
    l->len += n + 1;
    l->links++;
    return 0;
}

/* Runs without the GIL. */
static void
read_fds(fd_list *l)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        l->failed = 1;
        return;
    }
    char path[64];
    char target[PATH_MAX];
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        l->count++;
        if (snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name) >= (int)sizeof(path)) {
            continue;
        }
        ssize_t n = readlink(path, target, sizeof(target));
        if (n < 0 || (size_t)n >= sizeof(target)) {
            continue; /* closed meanwhile (the listing's own descriptor), or too long */
        }
        if (fd_list_add(l, target, (size_t)n) < 0) {
            l->failed = 1;
            break;
        }
    }
    closedir(d);
}

/* fd_targets() -> (count, [target, ...]) or None when /proc/self/fd cannot be read. */
static PyObject *
py_fd_targets(PyObject *self, PyObject *unused)
{
    fd_list l = {0};
    Py_BEGIN_ALLOW_THREADS
    read_fds(&l);
    Py_END_ALLOW_THREADS
    if (l.failed) {
        free(l.buf);
        Py_RETURN_NONE;
    }
    PyObject *targets = PyList_New(0);
    for (size_t off = 0; targets != NULL && off < l.len;) {
        size_t n = strlen(l.buf + off);
        PyObject *s = PyUnicode_DecodeFSDefaultAndSize(l.buf + off, (Py_ssize_t)n);
        if (s == NULL || PyList_Append(targets, s) < 0) {
            Py_XDECREF(s);
            Py_CLEAR(targets);
            break;
        }
        Py_DECREF(s);
        off += n + 1;
    }
    free(l.buf);
    if (targets == NULL) {
        return NULL;
    }
    return Py_BuildValue("(nN)", (Py_ssize_t)l.count, targets);
}

static PyMethodDef procfs_methods[] = {
    {"fd_targets", py_fd_targets, METH_NOARGS,
     "fd_targets() -> (descriptors, [link target, ...]) of /proc/self/fd, read with the GIL "
     "released once; None when it cannot be read."},
    {NULL, NULL, 0, NULL},
};

const hw_job hw_job_procfs = {
    .name = "procfs",
    .methods = procfs_methods,
};
