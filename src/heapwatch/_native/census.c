/* census.c — the census job: count the gc-tracked objects by type and list the big
 * containers, in one pass, as plain data.
 *
 * Invariants of census() (the job's only entry point):
 *   - GIL held from start to end, never released.
 *   - Runs no Python code. The pass reads type pointers, walks tp_mro (PyType_IsSubtype)
 *     and reads container lengths from the base types' own fields — dict ma_used, list and
 *     deque ob_size, set used — never a __len__, __hash__ or __eq__ of the target's.
 *   - The gc is disabled (PyGC_Disable) from the first allocation after the arguments are
 *     read to the end, so no collection (and no finalizer, no weakref callback) can start.
 *   - During the walk it allocates raw memory only (PyMem_Raw*: no collection can start
 *     and no allocator hook on the object domain sees it), takes no reference and drops
 *     none (see gcwalk.c).
 *   - What comes out holds types (to be named), ints, and strong references only to the
 *     containers the caller asked for by id — dict, list, set and deque, and their
 *     subclasses — never a tuple, str or bytes (code building one may rely on holding the
 *     only reference, as _PyTuple_Resize does).
 */
#include "jobs.h"
#include "gcwalk.h"

#include <stdint.h>
#include <stdlib.h>

enum { KIND_NONE = 0, KIND_DICT, KIND_LIST, KIND_SET, KIND_DEQUE };

typedef struct {
    PyTypeObject *type; /* NULL: empty slot */
    Py_ssize_t count;
    int kind;
} type_slot;

typedef struct {
    uintptr_t id;
    PyTypeObject *type;
    Py_ssize_t len;
} big_entry;

typedef struct {
    uintptr_t *ids;
    size_t n;
} id_set; /* sorted, for bsearch */

typedef struct {
    type_slot *slots;
    size_t mask, used;
    big_entry *big;
    size_t nbig, capbig;
    PyObject **wanted; /* borrowed during the walk */
    size_t nwanted, capwanted;
    id_set exclude, want;
    Py_ssize_t floor;
    Py_ssize_t total;
    type_slot *last; /* the previous object's slot: neighbours in gc lists often share a type */
    int nomem;
} census_state;

static PyTypeObject *deque_type = NULL; /* strong reference, taken at init */
static const char *unavailable = "not initialised";

/* -- small raw-memory containers (no Python objects) -------------------------------- */

static int
cmp_id(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return (x > y) - (x < y);
}

static int
has_id(const id_set *s, uintptr_t id)
{
    return s->n != 0 && bsearch(&id, s->ids, s->n, sizeof(uintptr_t), cmp_id) != NULL;
}

/* Read an iterable of ints (object ids) into a sorted array. Before the walk: Python code
 * may run here (iterating the caller's object), the gc is still enabled. */
static int
read_ids(PyObject *obj, id_set *out)
{
    out->ids = NULL;
    out->n = 0;
    if (obj == NULL || obj == Py_None) {
        return 0;
    }
    PyObject *seq = PySequence_Fast(obj, "exclude and want must be iterables of ints");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > 0) {
        out->ids = PyMem_RawMalloc((size_t)n * sizeof(uintptr_t));
        if (out->ids == NULL) {
            Py_DECREF(seq);
            PyErr_NoMemory();
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyLong_Check(item)) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "exclude and want must be iterables of ints");
            return -1;
        }
        void *p = PyLong_AsVoidPtr(item);
        if (p == NULL && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        out->ids[out->n++] = (uintptr_t)p;
    }
    Py_DECREF(seq);
    if (out->n > 1) {
        qsort(out->ids, out->n, sizeof(uintptr_t), cmp_id);
    }
    return 0;
}

static int
kind_of(PyTypeObject *tp)
{
    if (PyType_IsSubtype(tp, &PyDict_Type)) {
        return KIND_DICT;
    }
    if (PyType_IsSubtype(tp, &PyList_Type)) {
        return KIND_LIST;
    }
    if (PyType_IsSubtype(tp, &PySet_Type)) {
        return KIND_SET;
    }
    if (deque_type != NULL && PyType_IsSubtype(tp, deque_type)) {
        return KIND_DEQUE;
    }
    return KIND_NONE;
}

static size_t
hash_type(PyTypeObject *tp)
{
    uintptr_t x = (uintptr_t)tp >> 4;
    return (size_t)(x * (uintptr_t)0x9E3779B97F4A7C15ULL);
}

static int
grow_types(census_state *st)
{
    size_t size = st->slots == NULL ? 1024 : (st->mask + 1) * 2;
    type_slot *slots = PyMem_RawCalloc(size, sizeof(type_slot));
    if (slots == NULL) {
        return -1;
    }
    if (st->slots != NULL) {
        for (size_t i = 0; i <= st->mask; i++) {
            if (st->slots[i].type != NULL) {
                size_t j = hash_type(st->slots[i].type) & (size - 1);
                while (slots[j].type != NULL) {
                    j = (j + 1) & (size - 1);
                }
                slots[j] = st->slots[i];
            }
        }
        PyMem_RawFree(st->slots);
    }
    st->slots = slots;
    st->mask = size - 1;
    st->last = NULL; /* it pointed into the old table */
    return 0;
}

static type_slot *
slot_for(census_state *st, PyTypeObject *tp)
{
    size_t i = hash_type(tp) & st->mask;
    while (st->slots[i].type != NULL) {
        if (st->slots[i].type == tp) {
            return &st->slots[i];
        }
        i = (i + 1) & st->mask;
    }
    if ((st->used + 1) * 2 > st->mask + 1) {
        if (grow_types(st) < 0) {
            return NULL;
        }
        return slot_for(st, tp);
    }
    st->used++;
    st->slots[i].type = tp;
    st->slots[i].count = 0;
    st->slots[i].kind = kind_of(tp);
    return &st->slots[i];
}

static int
push_big(census_state *st, uintptr_t id, PyTypeObject *tp, Py_ssize_t len)
{
    if (st->nbig == st->capbig) {
        size_t cap = st->capbig ? st->capbig * 2 : 256;
        big_entry *b = PyMem_RawRealloc(st->big, cap * sizeof(big_entry));
        if (b == NULL) {
            return -1;
        }
        st->big = b;
        st->capbig = cap;
    }
    st->big[st->nbig].id = id;
    st->big[st->nbig].type = tp;
    st->big[st->nbig].len = len;
    st->nbig++;
    return 0;
}

static int
push_wanted(census_state *st, PyObject *op)
{
    if (st->nwanted == st->capwanted) {
        size_t cap = st->capwanted ? st->capwanted * 2 : 16;
        PyObject **w = PyMem_RawRealloc(st->wanted, cap * sizeof(PyObject *));
        if (w == NULL) {
            return -1;
        }
        st->wanted = w;
        st->capwanted = cap;
    }
    st->wanted[st->nwanted++] = op;
    return 0;
}

/* -- the walk ------------------------------------------------------------------------- */

static int
visit(PyObject *op, void *arg)
{
    census_state *st = (census_state *)arg;
    type_slot *slot = st->last;
    if (slot == NULL || slot->type != Py_TYPE(op)) {
        slot = slot_for(st, Py_TYPE(op));
        if (slot == NULL) {
            st->nomem = 1;
            return 0;
        }
        st->last = slot;
    }
    slot->count++;
    st->total++;
    if (slot->kind == KIND_NONE) {
        return 1;
    }
    Py_ssize_t len;
    switch (slot->kind) {
    case KIND_DICT:
        len = PyDict_GET_SIZE(op);
        break;
    case KIND_LIST:
        len = PyList_GET_SIZE(op);
        break;
    case KIND_SET:
        len = PySet_GET_SIZE(op);
        break;
    default: /* a deque keeps its length in ob_size */
        len = Py_SIZE(op);
        break;
    }
    uintptr_t id = (uintptr_t)op;
    if (has_id(&st->want, id) && push_wanted(st, op) < 0) {
        st->nomem = 1;
        return 0;
    }
    if (len >= st->floor && !has_id(&st->exclude, id) && push_big(st, id, slot->type, len) < 0) {
        st->nomem = 1;
        return 0;
    }
    return 1;
}

/* -- plain data out ------------------------------------------------------------------- */

static PyObject *
build_result(census_state *st)
{
    PyObject *counts = PyList_New((Py_ssize_t)st->used);
    PyObject *big = PyList_New((Py_ssize_t)st->nbig);
    PyObject *wanted = PyList_New((Py_ssize_t)st->nwanted);
    if (counts == NULL || big == NULL || wanted == NULL) {
        goto error;
    }
    Py_ssize_t k = 0;
    for (size_t i = 0; i <= st->mask; i++) {
        type_slot *s = &st->slots[i];
        if (s->type == NULL) {
            continue;
        }
        PyObject *t = Py_BuildValue("(On)", (PyObject *)s->type, s->count);
        if (t == NULL) {
            goto error;
        }
        PyList_SET_ITEM(counts, k++, t);
    }
    for (size_t i = 0; i < st->nbig; i++) {
        big_entry *b = &st->big[i];
        PyObject *t = Py_BuildValue("(NOn)", PyLong_FromVoidPtr((void *)b->id),
                                    (PyObject *)b->type, b->len);
        if (t == NULL) {
            goto error;
        }
        PyList_SET_ITEM(big, (Py_ssize_t)i, t);
    }
    for (size_t i = 0; i < st->nwanted; i++) {
        Py_INCREF(st->wanted[i]);
        PyList_SET_ITEM(wanted, (Py_ssize_t)i, st->wanted[i]);
    }
    return Py_BuildValue("(NNNn)", counts, big, wanted, st->total);

error:
    Py_XDECREF(counts);
    Py_XDECREF(big);
    Py_XDECREF(wanted);
    return NULL;
}

PyDoc_STRVAR(census_doc,
"census(floor, exclude=None, want=None) -> (counts, big, wanted, total)\n\
\n\
One pass over the gc-tracked objects, holding the GIL and running no Python code.\n\
counts: [(type, n)]; big: [(id, type, len)] for dict/list/set/deque (and subclasses)\n\
with len >= floor and id not in exclude; wanted: the containers whose id is in want;\n\
total: the number of objects visited.");

static PyObject *
census(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"floor", "exclude", "want", NULL};
    Py_ssize_t floor;
    PyObject *exclude = NULL, *want = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n|OO:census", kwlist, &floor, &exclude,
                                     &want)) {
        return NULL;
    }
    if (unavailable != NULL) {
        PyErr_Format(PyExc_RuntimeError, "the native census is unavailable: %s", unavailable);
        return NULL;
    }
    census_state st = {0};
    st.floor = floor;
    PyObject *result = NULL;
    if (read_ids(exclude, &st.exclude) < 0 || read_ids(want, &st.want) < 0) {
        goto done;
    }
    if (grow_types(&st) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    int was_enabled = PyGC_Disable();
    hw_gc_walk(visit, &st);
    if (st.nomem) {
        PyErr_NoMemory();
    }
    else {
        result = build_result(&st);
    }
    if (was_enabled) {
        PyGC_Enable();
    }
done:
    PyMem_RawFree(st.slots);
    PyMem_RawFree(st.big);
    PyMem_RawFree(st.wanted);
    PyMem_RawFree(st.exclude.ids);
    PyMem_RawFree(st.want.ids);
    return result;
}

static PyMethodDef census_methods[] = {
    {"census", (PyCFunction)(void (*)(void))census, METH_VARARGS | METH_KEYWORDS, census_doc},
    {NULL, NULL, 0, NULL},
};

/* At import: GIL held, may run Python code. Never fails the import: a census that cannot
 * run here says why in CENSUS_UNAVAILABLE (None when it can). */
static int
census_init(PyObject *module)
{
    PyObject *collections = PyImport_ImportModule("collections");
    PyObject *dq = collections ? PyObject_GetAttrString(collections, "deque") : NULL;
    Py_XDECREF(collections);
    if (dq != NULL && PyType_Check(dq)) {
        Py_XSETREF(deque_type, (PyTypeObject *)dq);
        unavailable = hw_gc_walk_check();
    }
    else {
        Py_XDECREF(dq);
        PyErr_Clear();
        unavailable = "collections.deque is not a type here";
    }
    PyObject *why = unavailable ? PyUnicode_FromString(unavailable) : Py_NewRef(Py_None);
    if (why == NULL || PyModule_AddObject(module, "CENSUS_UNAVAILABLE", why) < 0) {
        Py_XDECREF(why);
        return -1;
    }
    return 0;
}

static void
census_fini(void)
{
    Py_CLEAR(deque_type);
}

const hw_job hw_job_census = {
    .name = "census",
    .methods = census_methods,
    .init = census_init,
    .fini = census_fini,
};
