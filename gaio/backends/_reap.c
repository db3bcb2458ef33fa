/* The io_uring engine's completion fast path: Engine._process in uring.py,
 * for the completions that need nothing but bookkeeping.
 *
 * gaio_reap (build_uring.py) copies CQEs out as pairs of 64-bit words: the
 * op's name (kind << KIND_SHIFT | fd, below COMPACT) and res << RES_SHIFT |
 * buffer id << BID_SHIFT | flags. Turning each pair into the front end's
 * (token, res, memory) took about 700 instructions a completion in the
 * compiled twin, most of them boxing the two words into ints, and a list to
 * hold them. Here a completion that moved bytes, on an op the engine has
 * filed, with nothing to note about it, costs a slot cleared, a result
 * boxed, a memoryview sliced and three appends.
 *
 * process() stops at the first completion that needs more (an error, end of
 * stream, an internal user_data, a read that filled its buffer, a wide
 * buffer, a buffer with no view yet, ...) and returns its index: the engine
 * handles that one in Python, then calls again for the rest, so completions
 * come out in order. It knows nothing of cancels or resets: the engine calls
 * it only while none is outstanding. The layout constants come from uring.py
 * once, through configure(), so the two can never disagree.
 *
 * Only Python objects and memory the engine owns are touched, with the GIL
 * held (a plain CPython extension, not cffi: cffi releases the GIL around
 * every call and offers no way to hand Python objects to C).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static struct {
    int ready;
    int kind_shift, res_shift, bid_shift;
    int64_t fd_mask, compact, f_buffer, bid_mask;
    int64_t recv, recv_select, send;
} K;

PyDoc_STRVAR(configure_doc,
"configure(kind_shift, fd_mask, compact, res_shift, f_buffer, bid_shift, bid_mask, recv, recv_select, send)\n--\n\n"
"Set the CQE layout and op kinds (uring.py's constants) once, before process().");

static PyObject *
configure(PyObject *self, PyObject *args)
{
    long long v[10];
    if (!PyArg_ParseTuple(args, "LLLLLLLLLL:configure", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                          &v[6], &v[7], &v[8], &v[9]))
        return NULL;
    static const char *const shifts[] = {"kind_shift", NULL, NULL, "res_shift", NULL, "bid_shift"};
    for (int k = 0; k < 6; k++) {
        if (shifts[k] != NULL && (v[k] < (k == 5 ? 0 : 1) || v[k] > 62)) {
            PyErr_Format(PyExc_ValueError, "configure: %s must be from %d to 62, not %lld", shifts[k],
                         k == 5 ? 0 : 1, v[k]);
            return NULL;
        }
    }
    K.kind_shift = (int)v[0];
    K.fd_mask = v[1];
    K.compact = v[2];
    K.res_shift = (int)v[3];
    K.f_buffer = v[4];
    K.bid_shift = (int)v[5];
    K.bid_mask = v[6];
    K.recv = v[7];
    K.recv_select = v[8];
    K.send = v[9];
    K.ready = 1;
    Py_RETURN_NONE;
}

/* The list at index i of list ``lists``, or NULL (no exception set). */
static PyObject *
list_at(PyObject *lists, int64_t i)
{
    if (i < 0 || i >= PyList_GET_SIZE(lists))
        return NULL;
    PyObject *item = PyList_GET_ITEM(lists, i);
    return PyList_CheckExact(item) ? item : NULL;
}

/* Append a, b and c to ``out``, taking over the references to a and b. */
static int
append3(PyObject *out, PyObject *a, PyObject *b, PyObject *c)
{
    int rv = PyList_Append(out, a);
    if (rv == 0)
        rv = PyList_Append(out, b);
    if (rv == 0)
        rv = PyList_Append(out, c);
    Py_DECREF(a);
    Py_DECREF(b);
    return rv;
}

PyDoc_STRVAR(process_doc,
"process(cq, start, n, ops, pins, views, wide, entry, wide_on, lent, out) -> int\n--\n\n"
"Turn completions start..n-1 of ``cq`` (a memoryview of gaio_reap's words) into\n"
"(token, res, memory) triples appended to ``out``, as Engine._process does, up to\n"
"the first one that needs Python; return its index (n when none did).");

static PyObject *
process(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11) {
        PyErr_Format(PyExc_TypeError, "process() takes 11 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!K.ready) {
        PyErr_SetString(PyExc_RuntimeError, "process() before configure()");
        return NULL;
    }
    PyObject *cq_obj = args[0], *ops = args[3], *pins = args[4], *views = args[5];
    PyObject *wide = args[6], *lent = args[9], *out = args[10];
    if (!PyMemoryView_Check(cq_obj) || !PyList_CheckExact(ops) || !PyList_CheckExact(pins)
        || !PyList_CheckExact(views) || !PyList_CheckExact(wide) || !PyList_CheckExact(lent)
        || !PyList_CheckExact(out)) {
        PyErr_SetString(PyExc_TypeError, "process(): cq must be a memoryview, the others lists");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    Py_ssize_t n = PyLong_AsSsize_t(args[2]);
    long long entry = PyLong_AsLongLong(args[7]);
    int wide_on = PyObject_IsTrue(args[8]);
    if ((start == -1 || n == -1 || entry == -1 || wide_on < 0) && PyErr_Occurred())
        return NULL;
    Py_buffer *buf = PyMemoryView_GET_BUFFER(cq_obj);
    if (start < 0 || n < start || buf->len / (Py_ssize_t)(2 * sizeof(int64_t)) < n) {
        PyErr_SetString(PyExc_ValueError, "process(): start and n must lie within cq");
        return NULL;
    }
    const int64_t *cq = (const int64_t *)buf->buf;

    Py_ssize_t i;
    for (i = start; i < n; i++) {
        int64_t who = cq[2 * i], word = cq[2 * i + 1];
        if (who < 0 || who >= K.compact)
            break;                               /* a user_data copied out whole */
        int64_t kind = who >> K.kind_shift, fd = who & K.fd_mask;
        int64_t res = word >> K.res_shift;       /* arithmetic: -errno stays negative */
        if (res <= 0)
            break;                               /* errors and end of stream */
        PyObject *tab = list_at(ops, kind);
        if (tab == NULL || fd >= PyList_GET_SIZE(tab))
            break;
        PyObject *op = PyList_GET_ITEM(tab, fd);
        if (op == Py_None)
            break;
        PyObject *whole = NULL, *ptab = NULL;
        int64_t bid = -1;
        if (kind == K.recv_select) {
            if (fd < PyList_GET_SIZE(wide)) {
                PyObject *state = PyList_GET_ITEM(wide, fd);
                if (!PyLong_CheckExact(state) || PyLong_AsLong(state) != 0)
                    break;                       /* marked for read-ahead */
            }
            if (!(word & K.f_buffer) || (wide_on && res == entry))
                break;                           /* no buffer; or filled: mark for read-ahead */
            bid = (word >> K.bid_shift) & K.bid_mask;
            if (bid >= PyList_GET_SIZE(views))
                break;
            whole = PyList_GET_ITEM(views, bid);
            if (!PyMemoryView_Check(whole) || res > PyMemoryView_GET_BUFFER(whole)->len)
                break;                           /* (no view of that buffer yet: made in Python) */
        } else if (kind == K.recv || kind == K.send) {
            ptab = list_at(pins, kind);
            if (ptab == NULL || fd >= PyList_GET_SIZE(ptab))
                break;
        } else {
            break;
        }
        /* committed: from here on this completion is handled */
        PyObject *boxed = PyLong_FromLongLong(res);
        if (boxed == NULL)
            return NULL;
        PyObject *mem = Py_None;
        Py_INCREF(mem);
        if (whole != NULL) {
            /* whole[:res], as the Python loop slices it (the view keeps the
               pool's export: the pool cannot go while the user holds it) */
            PyObject *b = PyLong_FromLongLong(bid);
            PyObject *slice = PySlice_New(NULL, boxed, NULL);
            Py_DECREF(mem);
            mem = slice == NULL ? NULL : PyObject_GetItem(whole, slice);
            Py_XDECREF(slice);
            if (b == NULL || mem == NULL || PyList_Append(lent, b) < 0) {
                Py_XDECREF(b);
                Py_XDECREF(mem);
                Py_DECREF(boxed);
                return NULL;
            }
            Py_DECREF(b);
        }
        PyObject *pin = NULL;
        if (ptab != NULL) {                      /* the kernel is done with the op's memory */
            pin = PyList_GET_ITEM(ptab, fd);
            Py_INCREF(Py_None);
            PyList_SET_ITEM(ptab, fd, Py_None);
        }
        Py_INCREF(Py_None);
        PyList_SET_ITEM(tab, fd, Py_None);       /* the slot's reference to op is now ours */
        int rv = append3(out, op, boxed, mem);   /* (takes op and boxed) */
        Py_DECREF(mem);
        Py_XDECREF(pin);                         /* last: may free the pinned memory's cdata */
        if (rv < 0)
            return NULL;
    }
    return PyLong_FromSsize_t(i);
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, configure_doc},
    {"process", (PyCFunction)(void (*)(void))process, METH_FASTCALL, process_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_reap",
    "The io_uring engine's completion fast path (see uring.py, Engine._process).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__reap(void)
{
    return PyModule_Create(&module);
}
