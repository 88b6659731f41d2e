/*
 * policy.c - rekey policies between Python keywords and the core's
 * trk_rekey_policy: bytes=None, records=None, seconds=None, request_peer=False,
 * use_renegotiation=False, aead_limit=True, read_bytes=None, min_interval=None (None
 * leaves a threshold out: no limit).
 */
#include <math.h>
#include <string.h>

#include "shim.h"

static char *policy_kwlist[] = {"bytes", "records", "seconds", "request_peer",
                                "use_renegotiation", "aead_limit", "read_bytes",
                                "min_interval", NULL};

/* One threshold given as a keyword: None leaves it out (no limit); an int, or a float
 * (or any other number, for seconds), goes to the core, which decides what values a
 * threshold may take and says so naming it. */
static int threshold_arg(PyObject *obj, const char *name, trk_rekey_policy *p)
{
    trk_error err;
    trk_status st;

    if (obj == Py_None)
        return 0;
    if (PyBool_Check(obj) ||
        !(PyIndex_Check(obj) || PyFloat_Check(obj) ||
          ((strcmp(name, "seconds") == 0 || strcmp(name, "min_interval") == 0) &&
           PyNumber_Check(obj)))) {
        PyErr_Format(PyExc_TypeError, "%s: expected a number or None, not %.100s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyIndex_Check(obj)) {
        PyObject *i = PyNumber_Index(obj);
        unsigned long long v = 0;
        int fits;

        if (i == NULL)
            return -1;
        v = PyLong_AsUnsignedLongLong(i); /* fails for a negative int too */
        fits = !(v == (unsigned long long)-1 && PyErr_Occurred());
        PyErr_Clear();
        if (fits) {
            st = trk_rekey_policy_set_count(p, name, v, &err);
        } else {
            /* negative, or past 64 bits: the core words the refusal */
            double d = PyLong_AsDouble(i);
            if (d == -1.0 && PyErr_Occurred()) { /* beyond a double too */
                PyObject *zero = PyLong_FromLong(0);
                PyErr_Clear();
                d = zero != NULL && PyObject_RichCompareBool(i, zero, Py_LT) == 1
                        ? -HUGE_VAL : HUGE_VAL;
                Py_XDECREF(zero);
                PyErr_Clear();
            }
            st = trk_rekey_policy_set_number(p, name, d, &err);
        }
        Py_DECREF(i);
    } else {
        double d = PyFloat_AsDouble(obj);
        if (d == -1.0 && PyErr_Occurred())
            return -1;
        st = trk_rekey_policy_set_number(p, name, d, &err);
    }
    if (st != TRK_OK) {
        shim_raise(st, &err, name);
        return -1;
    }
    return 0;
}

int shim_parse_policy(PyObject *args, PyObject *kwds, const char *fname,
                      trk_rekey_policy *p)
{
    PyObject *bytes = Py_None, *records = Py_None, *seconds = Py_None;
    PyObject *read_bytes = Py_None, *min_interval = Py_None;
    int request_peer = 0, use_renegotiation = 0, aead_limit = 1;
    char format[64];

    PyOS_snprintf(format, sizeof format, "|$OOOpppOO:%s", fname);
    if (!PyArg_ParseTupleAndKeywords(args, kwds, format, policy_kwlist, &bytes,
                                     &records, &seconds, &request_peer,
                                     &use_renegotiation, &aead_limit, &read_bytes,
                                     &min_interval))
        return -1;
    trk_rekey_policy_default(p);
    if (threshold_arg(bytes, "bytes", p) < 0 || threshold_arg(records, "records", p) < 0 ||
        threshold_arg(seconds, "seconds", p) < 0 ||
        threshold_arg(read_bytes, "read_bytes", p) < 0 ||
        threshold_arg(min_interval, "min_interval", p) < 0)
        return -1;
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
    PyObject *read_bytes = p->read_bytes ? PyLong_FromUnsignedLongLong(p->read_bytes)
                                         : Py_NewRef(Py_None);
    PyObject *min_interval = p->min_interval > 0 ? PyFloat_FromDouble(p->min_interval)
                                                 : Py_NewRef(Py_None);
    PyObject *d = NULL;
    if (bytes && records && seconds && read_bytes && min_interval)
        d = Py_BuildValue("{s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O}", "bytes", bytes, "records",
                          records, "seconds", seconds, "request_peer",
                          p->request_peer ? Py_True : Py_False, "use_renegotiation",
                          p->use_renegotiation ? Py_True : Py_False, "aead_limit",
                          p->aead_limit ? Py_True : Py_False, "read_bytes", read_bytes,
                          "min_interval", min_interval);
    Py_XDECREF(bytes);
    Py_XDECREF(records);
    Py_XDECREF(seconds);
    Py_XDECREF(read_bytes);
    Py_XDECREF(min_interval);
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
