/* attrs.c — an instance's attributes read without materializing its __dict__.
 *
 * On 3.11+ an ordinary instance keeps its attributes as a values array next to the object,
 * named by keys its class shares ("managed dict"); there is no dict until someone asks for
 * ``__dict__``. Asking creates one, for the rest of the object's life, and from then on the
 * interpreter's fast paths for attribute access no longer apply to it: ``o.a`` costs ~3.7x
 * on 3.11, 3.6x on 3.12, 1.5x on 3.13 (measured here). The owner walk reads the attributes
 * of every long-lived object it passes (a web app's router, its routes, its config), the
 * very objects every request touches; so it reads them here, as the interpreter does: the
 * class's cached keys for the names, the values array for the values, or the dict when
 * there already is one.
 *
 * Invariants: GIL held; no Python code runs; nothing of the target's is created or changed
 * (one new list of new tuples is all it allocates). 3.10 has no managed dicts, and 3.14+'s
 * layout is not read yet: there it returns None and the walk reads ``__dict__`` as before.
 */
#include <patchlevel.h>
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000
#  define HW_MANAGED_DICT 1
#  define Py_BUILD_CORE 1
#endif
#include "jobs.h"

#ifdef HW_MANAGED_DICT
#  include <internal/pycore_object.h>
#  include <internal/pycore_dict.h>

static int
append_pair(PyObject *out, PyObject *name, PyObject *value)
{
    PyObject *pair = PyTuple_Pack(2, name, value);
    if (pair == NULL) {
        return -1;
    }
    int rc = PyList_Append(out, pair);
    Py_DECREF(pair);
    return rc;
}

/* The dict's str-keyed items (PyDict_Next runs no code: no __eq__, no __hash__). */
static int
dict_pairs(PyObject *out, PyObject *dict)
{
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(dict, &pos, &k, &v)) {
        if (PyUnicode_Check(k) && append_pair(out, k, v) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The values array read through the class's shared keys: entry i names values[i]. */
static int
values_pairs(PyObject *out, PyTypeObject *tp, PyDictValues *values)
{
    PyDictKeysObject *keys = ((PyHeapTypeObject *)tp)->ht_cached_keys;
    if (keys == NULL || keys->dk_kind == DICT_KEYS_GENERAL) {
        return 0;
    }
    Py_ssize_t n = keys->dk_nentries;
#  if PY_VERSION_HEX >= 0x030D0000
    if (n > values->capacity) {
        n = values->capacity;
    }
#  endif
    PyDictUnicodeEntry *entries = DK_UNICODE_ENTRIES(keys);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = entries[i].me_key;
        PyObject *value = values->values[i];
        if (name != NULL && value != NULL && append_pair(out, name, value) < 0) {
            return -1;
        }
    }
    return 0;
}
#endif

/* instance_attrs(obj) -> [(name, value)] for an instance with a managed dict, else None. */
static PyObject *
py_instance_attrs(PyObject *self, PyObject *obj)
{
#ifdef HW_MANAGED_DICT
    PyTypeObject *tp = Py_TYPE(obj);
    if (!(tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) || !(tp->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        Py_RETURN_NONE;
    }
    PyObject *dict = NULL;
    PyDictValues *values = NULL;
#  if PY_VERSION_HEX >= 0x030D0000
    dict = (PyObject *)_PyObject_GetManagedDict(obj);
    if (dict == NULL && (tp->tp_flags & Py_TPFLAGS_INLINE_VALUES)) {
        values = _PyObject_InlineValues(obj);
        if (!values->valid) {
            values = NULL;
        }
    }
#  elif PY_VERSION_HEX >= 0x030C0000
    PyDictOrValues dorv = *_PyObject_DictOrValuesPointer(obj);
    if (_PyDictOrValues_IsValues(dorv)) {
        values = _PyDictOrValues_GetValues(dorv);
    }
    else {
        dict = dorv.dict;
    }
#  else
    values = *_PyObject_ValuesPointer(obj);
    if (values == NULL) {
        dict = *_PyObject_ManagedDictPointer(obj);
    }
#  endif
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    int rc = 0;
    if (dict != NULL && PyDict_Check(dict)) {
        rc = dict_pairs(out, dict);
    }
    else if (values != NULL) {
        rc = values_pairs(out, tp, values);
    }
    if (rc < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
#else
    Py_RETURN_NONE;
#endif
}

static PyMethodDef attrs_methods[] = {
    {"instance_attrs", py_instance_attrs, METH_O,
     "instance_attrs(obj) -> [(name, value)] of an instance whose __dict__ is managed by the "
     "interpreter (3.11-3.13), read without creating the dict; None for any other object."},
    {NULL, NULL, 0, NULL},
};

const hw_job hw_job_attrs = {
    .name = "attrs",
    .methods = attrs_methods,
};
