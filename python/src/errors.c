/*
 * errors.c - the one place where a core status becomes a Python exception.
 *
 * The classes are made from the core's status table: for every status the core
 * names (trk_status_name), the table below says which Python class stands for it.
 * TRK_ARG is the built-in ValueError and TRK_NOMEM MemoryError (argument errors are
 * not tlsrekey.Error: a caller's mistake, not the connection's); every other status has a subclass of
 * tlsrekey.Error(OSError) whose `status` class attribute is the core's name.
 */
#include <string.h>

#include "shim.h"

static PyObject *Error_class;                         /* tlsrekey.Error */
static PyObject *status_class[TRK_STATUS_COUNT];      /* strong; NULL: none */

/* The attribute names shim_raise sets, interned once: PyObject_SetAttrString
 * interns its name on every call, which cost more than the rest of a raise. */
enum { A_STATUS, A_REASON, A_LIBRARY, A_SSL_ERROR, A_ERRNO, A_ERRORS, A_VERIFY_CODE,
       A_VERIFY_MESSAGE, A_ALERT, A_COUNT };
static const char *const attr_names[A_COUNT] = {
    "status", "reason", "library", "ssl_error", "errno", "errors", "verify_code",
    "verify_message", "alert"};
static PyObject *attr[A_COUNT];

static const struct exc_spec {
    const char *status;     /* trk_status_name() of the status it stands for */
    const char *name;       /* the class name in tlsrekey */
    const char *doc;
} exc_specs[] = {
    {"want_read", "WantReadError",
     "A non-blocking or memory-transport call needs bytes from the peer first.\n\n"
     "Wait until the socket is readable (or feed() the peer's bytes), then call\n"
     "the same method again with the same arguments."},
    {"want_write", "WantWriteError",
     "A non-blocking or memory-transport call must send bytes first.\n\n"
     "Wait until the socket is writable (or drain() the output), then call the same\n"
     "method again with the same arguments. Until that write completes,\n"
     "key_update() raises StateError (\"bad write retry\")."},
    {"closed", "ZeroReturnError",
     "The peer closed the TLS connection cleanly (close_notify).\n\n"
     "read() and read_into() report this as b\"\" / 0 instead of raising."},
    {"syscall", "SyscallError",
     "The transport failed, or the peer closed it without close_notify\n"
     "(\"unexpected eof while reading\"). .errno holds the system error if any."},
    {"protocol", "ProtocolError",
     "A TLS protocol failure: an alert, a failed handshake, a bad record, a refused\n"
     "renegotiation. .library and .reason name OpenSSL's reason."},
    {"verify", "CertificateError",
     "Certificate or host name verification failed.\n\n"
     ".verify_code is OpenSSL's X509_V_ERR_* code, .verify_message the sentence."},
    {"state", "StateError",
     "A valid call at the wrong time: before the handshake, key_update() on TLS 1.2,\n"
     "renegotiate() on TLS 1.3, a second key_update() while one is scheduled, a\n"
     "key_update() while a write is pending, any use after close(). Also a call\n"
     "that uses a socket its owner closed after wrap(), which fails the connection."},
    {"timeout", "TimeoutError",
     "A blocking transport's timeout passed. Also a builtins.TimeoutError."},
    {"callback", "CallbackError",
     "An event callback failed and left no Python exception to re-raise."},
};

static PyObject *
new_class(PyObject *module, const char *name, const char *doc, PyObject *bases,
          const char *status)
{
    char qualified[64];
    PyObject *dict, *cls;

    PyOS_snprintf(qualified, sizeof qualified, "tlsrekey.%s", name);
    dict = PyDict_New();
    if (dict == NULL)
        return NULL;
    if (status != NULL) {
        PyObject *s = PyUnicode_FromString(status);
        if (s == NULL || PyDict_SetItemString(dict, "status", s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(dict);
            return NULL;
        }
        Py_DECREF(s);
    }
    cls = PyErr_NewExceptionWithDoc(qualified, doc, bases, dict);
    Py_DECREF(dict);
    if (cls == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, name, cls) < 0) {
        Py_DECREF(cls);
        return NULL;
    }
    return cls;
}

static int
set_attr(PyObject *obj, const char *name, PyObject *value)
{
    int rc;

    if (value == NULL)
        return -1;
    rc = PyObject_SetAttrString(obj, name, value);
    Py_DECREF(value);
    return rc;
}

/* Class defaults, so that an instance a user raises himself still answers. */
static int
set_defaults(PyObject *cls)
{
    static const char *none_attrs[] = {"status", "reason", "library", "alert", NULL};
    PyObject *empty;
    int i;

    for (i = 0; none_attrs[i] != NULL; i++)
        if (PyObject_SetAttrString(cls, none_attrs[i], Py_None) < 0)
            return -1;
    if (set_attr(cls, "ssl_error", PyLong_FromLong(0)) < 0)
        return -1;
    empty = PyTuple_New(0);
    if (empty == NULL)
        return -1;
    i = PyObject_SetAttrString(cls, "errors", empty);
    Py_DECREF(empty);
    return i;
}

int
shim_errors_init(PyObject *module)
{
    PyObject *table;
    int s;
    size_t i;

    for (i = 0; i < A_COUNT; i++)
        if ((attr[i] = PyUnicode_InternFromString(attr_names[i])) == NULL)
            return -1;
    Error_class = new_class(
        module, "Error",
        "Base class of every tlsrekey failure (a subclass of OSError).\n\n"
        "Attributes: status (the core's status name, e.g. \"state\"), reason and\n"
        "library (OpenSSL's, or the core's own reason), ssl_error (SSL_get_error()\n"
        "value), errno (system error or None), errors (the queued OpenSSL error\n"
        "lines), alert (the RFC 8446 code of the alert the peer sent, or None).\n"
        "str() is one readable sentence.",
        PyExc_OSError, NULL);
    if (Error_class == NULL || set_defaults(Error_class) < 0)
        return -1;

    /* {status name: class} for every status the core knows, so that a test can
     * check that each one has a Python class. */
    table = PyDict_New();
    if (table == NULL)
        return -1;
    for (s = 0; s < TRK_STATUS_COUNT; s++) {
        const char *name = trk_status_name((trk_status)s);
        PyObject *cls = NULL;

        if (name == NULL || s == TRK_OK)
            continue;
        if (s == TRK_ARG) {
            cls = Py_NewRef(PyExc_ValueError);
        } else if (s == TRK_NOMEM) {
            cls = Py_NewRef(PyExc_MemoryError);
        } else {
            for (i = 0; i < sizeof exc_specs / sizeof exc_specs[0]; i++) {
                PyObject *bases;

                if (strcmp(exc_specs[i].status, name) != 0)
                    continue;
                if (s == TRK_TIMEOUT)
                    bases = PyTuple_Pack(2, Error_class, PyExc_TimeoutError);
                else
                    bases = PyTuple_Pack(1, Error_class);
                if (bases == NULL)
                    goto fail;
                cls = new_class(module, exc_specs[i].name, exc_specs[i].doc, bases,
                                name);
                Py_DECREF(bases);
                if (cls == NULL)
                    goto fail;
                if (s == TRK_VERIFY &&
                    (set_attr(cls, "verify_code", PyLong_FromLong(0)) < 0 ||
                     PyObject_SetAttrString(cls, "verify_message", Py_None) < 0))
                    goto fail;
                break;
            }
            /* A status the shim does not know yet is still raised, as the base
             * class; tests/python/test_errors.py fails on it. */
            if (cls == NULL)
                continue;
        }
        status_class[s] = cls;
        if (PyDict_SetItemString(table, name, cls) < 0)
            goto fail;
    }
    if (PyModule_AddObject(module, "_STATUS_CLASSES", table) < 0)
        goto fail;
    return 0;

fail:
    Py_DECREF(table);
    return -1;
}

static PyObject *
text(const char *s)
{
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

/* "" becomes None: no library or reason known. */
static PyObject *
text_or_none(const char *s)
{
    if (s == NULL || s[0] == '\0')
        Py_RETURN_NONE;
    return text(s);
}

/* Sets exc.<attr[which]> to value (stolen); -1 with an exception set. */
static int
set_new(PyObject *exc, int which, PyObject *value)
{
    int rc;

    if (value == NULL)
        return -1;
    rc = PyObject_SetAttr(exc, attr[which], value);
    Py_DECREF(value);
    return rc;
}

static int
is_ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

/* Whether the core's sentence names the argument already: it starts with the name
 * ("num_tickets must be ..."), or with it right after the call's name
 * ("key_update: updatetype must be ..."), or quotes it ("rekey policy 'bytes' ...",
 * "(cert)").
 * Merely containing it is not enough: "cert" is in "certificate", "key" in "private
 * key", and such a sentence does not tell which option was at fault. */
static int
names_argument(const char *message, const char *argname)
{
    size_t n = strlen(argname);
    const char *p;

    if (strncmp(message, argname, n) == 0 && !is_ident_char(message[n]))
        return 1;
    for (p = strstr(message, argname); p != NULL; p = strstr(p + 1, argname)) {
        char before = p > message ? p[-1] : '\0', after = p[n];
        if ((before == '\'' && after == '\'') || (before == '"' && after == '"') ||
            (before == '(' && after == ')'))
            return 1;
        if (before == ' ' && p - message >= 2 && p[-2] == ':' && !is_ident_char(after) &&
            strchr(message, ':') == p - 2)
            return 1;
    }
    return 0;
}

/*
 * The instance carries only what differs from its class's defaults (set_defaults:
 * status per class, reason/library None, ssl_error 0, verify_code 0, verify_message
 * None), plus its own `errors` list. A WantReadError, raised on nearly every call of
 * an event loop, thus costs one exception object and one list (bench/PROPOSALS.md,
 * P8).
 */
PyObject *
shim_raise(trk_status status, const trk_error *err, const char *argname)
{
    const char *message = trk_status_message(status);
    PyObject *cls, *arg, *exc, *errors;
    int i;

    if (err != NULL && err->message[0] != '\0')
        message = err->message;
    if (message == NULL)
        message = "unknown tlsrekey status";

    switch (status) {
    case TRK_OK:
        PyErr_SetString(PyExc_SystemError, "tlsrekey: raise with status ok");
        return NULL;
    case TRK_NOMEM:
        return PyErr_NoMemory();
    case TRK_ARG:
        if (argname != NULL && !names_argument(message, argname))
            PyErr_Format(PyExc_ValueError, "%s: %s", argname, message);
        else
            PyErr_SetString(PyExc_ValueError, message);
        return NULL;
    default:
        break;
    }

    cls = ((int)status >= 0 && status < TRK_STATUS_COUNT && status_class[status])
              ? status_class[status] : Error_class;
    arg = text(message);
    if (arg == NULL)
        return NULL;
    exc = PyObject_CallOneArg(cls, arg);
    Py_DECREF(arg);
    if (exc == NULL)
        return NULL;

    /* a status without a class of its own is raised as Error, whose status is None */
    if (cls == Error_class && set_new(exc, A_STATUS, text_or_none(trk_status_name(status))) < 0)
        goto fail;
    if (err != NULL) {
        if ((err->reason[0] != '\0' && set_new(exc, A_REASON, text(err->reason)) < 0) ||
            (err->library[0] != '\0' && set_new(exc, A_LIBRARY, text(err->library)) < 0) ||
            (err->ssl_error != 0 &&
             set_new(exc, A_SSL_ERROR, PyLong_FromLong(err->ssl_error)) < 0) ||
            (err->sys_errno != 0 && set_new(exc, A_ERRNO, PyLong_FromLong(err->sys_errno)) < 0) ||
            (err->alert >= 0 && set_new(exc, A_ALERT, PyLong_FromLong(err->alert)) < 0))
            goto fail;
        if (status == TRK_VERIFY &&
            (set_new(exc, A_VERIFY_CODE, PyLong_FromLong(err->verify_code)) < 0 ||
             set_new(exc, A_VERIFY_MESSAGE, text(message)) < 0))
            goto fail;
    }
    errors = PyList_New(0);
    if (errors == NULL)
        goto fail;
    for (i = 0; err != NULL && i < err->nqueue && i < TRK_ERROR_QUEUE_MAX; i++) {
        PyObject *line = text(err->queue[i]);
        if (line == NULL || PyList_Append(errors, line) < 0) {
            Py_XDECREF(line);
            Py_DECREF(errors);
            goto fail;
        }
        Py_DECREF(line);
    }
    if (set_new(exc, A_ERRORS, errors) < 0)
        goto fail;
    PyErr_SetObject(cls, exc);

fail:
    Py_DECREF(exc);
    return NULL;
}

PyObject *
shim_raise_state(const char *reason, const char *message)
{
    trk_error err;

    memset(&err, 0, sizeof err);
    err.status = TRK_STATE;
    PyOS_snprintf(err.reason, sizeof err.reason, "%s", reason);
    PyOS_snprintf(err.message, sizeof err.message, "%s", message);
    return shim_raise(TRK_STATE, &err, NULL);
}
