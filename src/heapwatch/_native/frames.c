/* Reading the current thread's Python stack from inside the allocator, per CPython
 * version, without creating frame objects (see sampler.h for the rules).
 *
 * 3.10: the PyFrameObject chain (tstate->frame, f_back), f_lasti in code units.
 * 3.11, 3.12: _PyInterpreterFrame chain from tstate->cframe->current_frame; 3.13: from
 * tstate->current_frame, the code object in f_executable. On 3.11+ an allocation can
 * happen while a frame is being set up ("incomplete": its first instruction not yet run)
 * or inside a shim frame owned by the C stack (3.12+): both are skipped, as CPython's own
 * _PyFrame_GetFirstComplete does. PyThreadState_GetFrame/PyFrame_GetBack are not used:
 * they create frame objects, an allocation (and possibly a collection) inside the hook.
 */
#include "sampler.h"

#if PY_VERSION_HEX >= 0x030E0000
   /* 3.14+: frame layout not read yet; the sampler refuses to start (sampler.c). */
#elif PY_VERSION_HEX >= 0x030B0000
#  ifndef Py_BUILD_CORE
#    define Py_BUILD_CORE 1
#  endif
#  include <internal/pycore_frame.h>
#else
#  include <frameobject.h>
#endif

static PyThreadState *
current_tstate(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyThreadState_GetUnchecked();
#else
    return _PyThreadState_UncheckedGet();
#endif
}

int
hw_read_stack(hw_frame *out, int max)
{
    PyThreadState *ts = current_tstate();
    int n = 0;
    if (ts == NULL || max <= 0) {
        return 0;
    }
#if PY_VERSION_HEX >= 0x030E0000
    /* 3.14+: not supported yet (the extension refuses to start the sampler there). */
    (void)out;
    return 0;
#elif PY_VERSION_HEX >= 0x030B0000
#  if PY_VERSION_HEX >= 0x030D0000
    _PyInterpreterFrame *f = ts->current_frame;
#  else
    _PyInterpreterFrame *f = ts->cframe ? ts->cframe->current_frame : NULL;
#  endif
    for (; f != NULL && n < max; f = f->previous) {
#  if PY_VERSION_HEX >= 0x030C0000
        if (f->owner == FRAME_OWNED_BY_CSTACK) {
            continue;
        }
#  endif
#  if PY_VERSION_HEX >= 0x030D0000
        PyObject *exe = f->f_executable;
        if (exe == NULL || !PyCode_Check(exe)) {
            continue;
        }
        PyCodeObject *code = (PyCodeObject *)exe;
#  else
        PyCodeObject *code = f->f_code;
        if (code == NULL) {
            continue;
        }
#  endif
        if (_PyFrame_IsIncomplete(f)) {
            continue;
        }
        out[n].code = code;
        out[n].lasti = (int32_t)_PyInterpreterFrame_LASTI(f);
        n++;
    }
#else
    PyFrameObject *f = ts->frame;
    for (; f != NULL && n < max; f = f->f_back) {
        if (f->f_code == NULL) {
            continue;
        }
        out[n].code = f->f_code;
        out[n].lasti = (int32_t)f->f_lasti;
        n++;
    }
#endif
    return n;
}

int
hw_frame_line(PyCodeObject *code, int32_t lasti)
{
    if (lasti < 0) {
        return code->co_firstlineno;
    }
#if PY_VERSION_HEX >= 0x030E0000
    return PyCode_Addr2Line(code, (int)(lasti * 2));
#elif PY_VERSION_HEX >= 0x030B0000
    return PyCode_Addr2Line(code, (int)(lasti * (int32_t)sizeof(_Py_CODEUNIT)));
#else
    return PyCode_Addr2Line(code, (int)(lasti * 2));
#endif
}

size_t
hw_preheader_size(PyObject *obj)
{
    PyTypeObject *tp = Py_TYPE(obj);
    size_t size = PyType_IS_GC(tp) ? 2 * sizeof(uintptr_t) : 0; /* PyGC_Head */
#if PY_VERSION_HEX >= 0x030C0000
    if (PyType_HasFeature(tp, Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_MANAGED_WEAKREF)) {
        size += 2 * sizeof(PyObject *);
    }
#elif PY_VERSION_HEX >= 0x030B0000
    if (PyType_HasFeature(tp, Py_TPFLAGS_MANAGED_DICT)) {
        size += 2 * sizeof(PyObject *);
    }
#endif
    return size;
}
