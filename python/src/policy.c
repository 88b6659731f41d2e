/*
 * policy.c - rekey policies between Python keywords and the core's
 * trk_rekey_policy: bytes=None, records=None, seconds=None, request_peer=False,
 * use_renegotiation=False, aead_limit=True (None disables a threshold).
 */
#include <math.h>

#include "shim.h"

static char *policy_kwlist[] = {"bytes", "records", "seconds", "request_peer",
                                "use_renegotiation", "aead_limit", NULL};

/* None -> 0; a non-negative int (not bool) -> its value. */
static int count_arg(PyObject *obj, const char *name, uint64_t *out)
{
    *out = 0;
    if (obj == Py_None)
        return 0;
    if (PyBool_Check(obj) || !PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: expected an int or None, not %.100s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s: must be a non-negative int that fits 64 bits",
                     name);
        return -1;
    }
    *out = v;
    return 0;
}

int shim_parse_policy(PyObject *args, PyObject *kwds, const char *fname,
                      trk_rekey_policy *p)
{
    PyObject *bytes = Py_None, *records = Py_None, *seconds = Py_None;
    int request_peer = 0, use_renegotiation = 0, aead_limit = 1;
    char format[64];

    PyOS_snprintf(format, sizeof format, "|$OOOppp:%s", fname);
    if (!PyArg_ParseTupleAndKeywords(args, kwds, format, policy_kwlist, &bytes,
                                     &records, &seconds, &request_peer,
                                     &use_renegotiation, &aead_limit))
        return -1;
    trk_rekey_policy_default(p);
    if (count_arg(bytes, "bytes", &p->bytes) < 0 ||
        count_arg(records, "records", &p->records) < 0)
        return -1;
    if (seconds != Py_None) {
        if (PyBool_Check(seconds) || !PyNumber_Check(seconds)) {
            PyErr_Format(PyExc_TypeError, "seconds: expected a number or None, not %.100s",
                         Py_TYPE(seconds)->tp_name);
            return -1;
        }
        p->seconds = PyFloat_AsDouble(seconds);
        if (p->seconds == -1.0 && PyErr_Occurred())
            return -1;
        if (!(p->seconds >= 0) || isinf(p->seconds)) {
            PyErr_SetString(PyExc_ValueError, "seconds: must be a finite number >= 0");
            return -1;
        }
    }
    p->request_peer = request_peer;
    p->use_renegotiation = use_renegotiation;
    p->aead_limit = aead_limit;
    return 0;
}

PyObject *shim_policy_dict(const trk_rekey_policy *p)
{
    PyObject *bytes = p->bytes ? PyLong_FromUnsignedLongLong(p->bytes) : Py_NewRef(Py_None);
    PyObject *records = p->records ? PyLong_FromUnsignedLongLong(p->records)
                                   : Py_NewRef(Py_None);
    PyObject *seconds = p->seconds > 0 ? PyFloat_FromDouble(p->seconds) : Py_NewRef(Py_None);
    PyObject *d = NULL;
    if (bytes && records && seconds)
        d = Py_BuildValue("{s:O,s:O,s:O,s:O,s:O,s:O}", "bytes", bytes, "records", records,
                          "seconds", seconds, "request_peer",
                          p->request_peer ? Py_True : Py_False, "use_renegotiation",
                          p->use_renegotiation ? Py_True : Py_False, "aead_limit",
                          p->aead_limit ? Py_True : Py_False);
    Py_XDECREF(bytes);
    Py_XDECREF(records);
    Py_XDECREF(seconds);
    return d;
}

PyObject *shim_testing_set_aead_scale(PyObject *module, PyObject *arg)
{
    SHIM_UNUSED(module);
    unsigned long long d = PyLong_AsUnsignedLongLong(arg);
    if (d == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (d < 1)
        return PyErr_Format(PyExc_ValueError, "divisor must be at least 1");
    trk_testing_set_aead_scale(d);
    Py_RETURN_NONE;
}
