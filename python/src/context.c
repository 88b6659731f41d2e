/*
 * context.c - the Context type: a trk_ctx and the constructors of connections.
 *
 * The readable constructors Context.client() / Context.server() are Python
 * (python/tlsrekey/__init__.py); they call the one-setting-each methods below,
 * whose names are the option names, so a ValueError names the option at fault.
 */
#include <limits.h>
#include <string.h>

#include "shim.h"

/* ------------------------------------------------------------------------- */
/* Argument converters                                                        */
/* ------------------------------------------------------------------------- */

int
shim_timeout_converter(PyObject *obj, void *out)
{
    double t;

    if (obj == Py_None) {
        *(double *)out = TRK_TIMEOUT_NONE;
        return 1;
    }
    if (PyBool_Check(obj) || !(PyLong_Check(obj) || PyFloat_Check(obj))) {
        PyErr_Format(PyExc_TypeError, "timeout must be None or a number, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return 0;
    }
    t = PyFloat_AsDouble(obj);
    if (t == -1.0 && PyErr_Occurred())
        return 0;
    if (!(t >= 0.0)) {   /* also rejects NaN */
        PyErr_SetString(PyExc_ValueError, "timeout must be None or >= 0");
        return 0;
    }
    *(double *)out = t;
    return 1;
}

/*
 * Certificate material: bytes (or any buffer) is PEM held in memory; str or a
 * path-like is a file path. `*keep` receives the object owning the bytes.
 */
typedef struct {
    PyObject *keep;          /* bytes object owning data */
    const char *data;
    size_t len;
    int is_pem;
} source;

static int
source_converter(PyObject *obj, void *out)
{
    source *src = out;

    if (obj == NULL) {       /* cleanup call from PyArg_Parse */
        Py_CLEAR(src->keep);
        return 1;
    }
    if (PyObject_CheckBuffer(obj) && !PyUnicode_Check(obj)) {
        src->keep = PyBytes_FromObject(obj);
        if (src->keep == NULL)
            return 0;
        src->is_pem = 1;
    } else if (PyUnicode_Check(obj) || PyObject_HasAttrString(obj, "__fspath__")) {
        PyObject *path = NULL;
        if (!PyUnicode_FSConverter(obj, &path))
            return 0;
        src->keep = path;
        src->is_pem = 0;
    } else {
        PyErr_Format(PyExc_TypeError,
                     "expected a file path (str or path-like) or PEM bytes, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return 0;
    }
    src->data = PyBytes_AS_STRING(src->keep);
    src->len = (size_t)PyBytes_GET_SIZE(src->keep);
    return Py_CLEANUP_SUPPORTED;
}

/* str or path-like -> bytes path; None -> NULL. */
static int
optional_path_converter(PyObject *obj, void *out)
{
    PyObject **path = out;

    if (obj == NULL) {
        Py_CLEAR(*path);
        return 1;
    }
    if (obj == Py_None) {
        *path = NULL;
        return 1;
    }
    if (!PyUnicode_FSConverter(obj, path))
        return 0;
    return Py_CLEANUP_SUPPORTED;
}

/* ------------------------------------------------------------------------- */
/* The type                                                                   */
/* ------------------------------------------------------------------------- */

static PyObject *
Context_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"role", "dtls", NULL};
    const char *role_name;
    int dtls = 0;
    trk_role role;
    trk_error err;
    trk_status st;
    ContextObject *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "s|$p:Context", kwlist, &role_name,
                                     &dtls))
        return NULL;
    if (strcmp(role_name, trk_role_name(TRK_CLIENT)) == 0)
        role = TRK_CLIENT;
    else if (strcmp(role_name, trk_role_name(TRK_SERVER)) == 0)
        role = TRK_SERVER;
    else
        return PyErr_Format(PyExc_ValueError,
                            "role: expected \"client\" or \"server\", not %R",
                            PyTuple_GET_ITEM(args, 0));

    self = (ContextObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    st = dtls ? trk_ctx_new_dtls(role, &self->ctx, &err)
              : trk_ctx_new(role, &self->ctx, &err);
    if (st != TRK_OK) {
        self->ctx = NULL;
        Py_DECREF(self);
        return shim_raise(st, &err, NULL);
    }
    return (PyObject *)self;
}

static void
Context_dealloc(ContextObject *self)
{
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    /* Connections hold their own trk_ctx reference: order does not matter. */
    trk_ctx_free(self->ctx);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
done(trk_status st, trk_error *err, const char *argname)
{
    if (st != TRK_OK)
        return shim_raise(st, err, argname);
    Py_RETURN_NONE;
}

/* ---- one setting each --------------------------------------------------- */

typedef trk_status (*string_setter)(trk_ctx *, const char *, trk_error *);

/* str (or None when `nullable`) -> a setter taking a NUL-terminated string. */
static PyObject *
set_string(ContextObject *self, PyObject *arg, string_setter fn, const char *argname,
           int nullable)
{
    const char *value = NULL;
    trk_error err;

    if (arg == Py_None && nullable) {
        value = NULL;
    } else if (PyUnicode_Check(arg)) {
        Py_ssize_t len;
        value = PyUnicode_AsUTF8AndSize(arg, &len);
        if (value == NULL)
            return NULL;
        if ((size_t)len != strlen(value))
            return PyErr_Format(PyExc_ValueError, "%s contains NUL", argname);
    } else {
        return PyErr_Format(PyExc_TypeError, "%s must be %s, not %.100s", argname,
                            nullable ? "a str or None" : "a str",
                            Py_TYPE(arg)->tp_name);
    }
    return done(fn(self->ctx, value, &err), &err, argname);
}

#define STRING_SETTER(pyname, fn, nullable)                                   \
    static PyObject *Context_##pyname(ContextObject *self, PyObject *arg)     \
    {                                                                         \
        return set_string(self, arg, fn, #pyname + 5, nullable);              \
    }

STRING_SETTER(_set_min_version, trk_ctx_set_min_version, 1)
STRING_SETTER(_set_max_version, trk_ctx_set_max_version, 1)
STRING_SETTER(_set_ciphers, trk_ctx_set_ciphers, 0)
STRING_SETTER(_set_ciphersuites, trk_ctx_set_ciphersuites, 0)
STRING_SETTER(_set_groups, trk_ctx_set_groups, 0)

typedef trk_status (*source_setter)(trk_ctx *, const char *, size_t, int, trk_error *);

static PyObject *
set_source(ContextObject *self, PyObject *arg, source_setter fn, const char *argname)
{
    source src = {NULL, NULL, 0, 0};
    trk_error err;
    trk_status st;

    if (!source_converter(arg, &src))
        return NULL;
    st = fn(self->ctx, src.data, src.len, src.is_pem, &err);
    Py_DECREF(src.keep);
    return done(st, &err, argname);
}

static PyObject *
Context__use_certificate(ContextObject *self, PyObject *arg)
{
    return set_source(self, arg, trk_ctx_use_certificate, "cert");
}

static PyObject *
Context__use_private_key(ContextObject *self, PyObject *arg)
{
    return set_source(self, arg, trk_ctx_use_private_key, "key");
}

/* Last, once every option is set: a context whose handshakes could only fail (a
 * server without its certificate or key) is refused where it is made. */
static PyObject *
Context__check(ContextObject *self, PyObject *unused)
{
    const char *option = NULL;
    trk_error err;
    trk_status st;

    SHIM_UNUSED(unused);
    st = trk_ctx_check(self->ctx, &option, &err);
    return done(st, &err, option);
}

static PyObject *
Context__load_verify(ContextObject *self, PyObject *args)
{
    PyObject *cafile = Py_None, *capath_bytes = NULL, *result;
    source src = {NULL, NULL, 0, 0};
    trk_error err;
    trk_status st;

    if (!PyArg_ParseTuple(args, "|OO&:_load_verify", &cafile,
                          optional_path_converter, &capath_bytes))
        return NULL;
    if (cafile != Py_None && !source_converter(cafile, &src)) {
        Py_XDECREF(capath_bytes);
        return NULL;
    }
    st = trk_ctx_load_verify(self->ctx, src.data, src.len, src.is_pem,
                             capath_bytes ? PyBytes_AS_STRING(capath_bytes) : NULL, &err);
    result = done(st, &err, "cafile/capath");
    Py_XDECREF(src.keep);
    Py_XDECREF(capath_bytes);
    return result;
}

static PyObject *
Context__load_default_verify(ContextObject *self, PyObject *unused)
{
    trk_error err;

    SHIM_UNUSED(unused);
    return done(trk_ctx_load_default_verify(self->ctx, &err), &err, NULL);
}

static PyObject *
Context__set_verify(ContextObject *self, PyObject *arg)
{
    long mode = PyLong_AsLong(arg);
    trk_error err;

    if (mode == -1 && PyErr_Occurred())
        return NULL;
    if (mode < TRK_VERIFY_NONE || mode > TRK_VERIFY_REQUIRED)
        return PyErr_Format(PyExc_ValueError, "verify mode: unknown value %ld", mode);
    return done(trk_ctx_set_verify(self->ctx, (trk_verify_mode)mode, &err), &err,
                "verify");
}

typedef trk_status (*flag_setter)(trk_ctx *, int, trk_error *);

static PyObject *
set_flag(ContextObject *self, PyObject *arg, flag_setter fn, const char *argname)
{
    int on = PyObject_IsTrue(arg);
    trk_error err;

    if (on < 0)
        return NULL;
    return done(fn(self->ctx, on, &err), &err, argname);
}

#define FLAG_SETTER(pyname, fn)                                               \
    static PyObject *Context_##pyname(ContextObject *self, PyObject *arg)     \
    {                                                                         \
        return set_flag(self, arg, fn, #pyname + 5);                          \
    }

FLAG_SETTER(_set_check_hostname, trk_ctx_set_check_hostname)
FLAG_SETTER(_set_session_cache, trk_ctx_set_session_cache)
FLAG_SETTER(_set_session_tickets, trk_ctx_set_session_tickets)
FLAG_SETTER(_set_ignore_unexpected_eof, trk_ctx_set_ignore_unexpected_eof)
FLAG_SETTER(_set_release_buffers, trk_ctx_set_release_buffers)
FLAG_SETTER(_set_cookie_exchange, trk_ctx_set_dtls_cookie_exchange)

/* DTLS: seconds before a flight is first retransmitted (0: OpenSSL's 1 s). */
static PyObject *
Context__set_dtls_initial_timeout(ContextObject *self, PyObject *arg)
{
    double seconds;
    trk_error err;

    if (PyBool_Check(arg) || !(PyLong_Check(arg) || PyFloat_Check(arg)))
        return PyErr_Format(PyExc_TypeError,
                            "dtls_initial_timeout must be a number, not %.100s",
                            Py_TYPE(arg)->tp_name);
    seconds = PyFloat_AsDouble(arg);
    if (seconds == -1.0 && PyErr_Occurred())
        return NULL;
    return done(trk_ctx_set_dtls_initial_timeout(self->ctx, seconds, &err), &err,
                "dtls_initial_timeout");
}

static PyObject *
Context__set_rekey_policy(ContextObject *self, PyObject *args, PyObject *kwds)
{
    trk_rekey_policy policy;
    trk_error err;

    if (shim_parse_policy(args, kwds, "rekey", &policy) < 0)
        return NULL;
    return done(trk_ctx_set_rekey_policy(self->ctx, &policy, &err), &err, "rekey");
}

static PyObject *
Context__set_num_tickets(ContextObject *self, PyObject *arg)
{
    long n;
    trk_error err;

    if (PyBool_Check(arg) || !PyLong_Check(arg))
        return PyErr_Format(PyExc_TypeError, "num_tickets must be an int, not %.100s",
                            Py_TYPE(arg)->tp_name);
    n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < INT_MIN || n > INT_MAX)
        return PyErr_Format(PyExc_ValueError, "num_tickets: %ld is out of range", n);
    return done(trk_ctx_set_num_tickets(self->ctx, (int)n, &err), &err, "num_tickets");
}

static PyObject *
Context__set_keylog(ContextObject *self, PyObject *arg)
{
    PyObject *path = NULL, *result;
    trk_error err;

    if (!optional_path_converter(arg, &path))
        return NULL;
    result = done(trk_ctx_set_keylog_file(self->ctx, path ? PyBytes_AS_STRING(path) : NULL,
                                          &err),
                  &err, "keylog");
    Py_XDECREF(path);
    return result;
}

static PyObject *
Context__set_keylog_from_env(ContextObject *self, PyObject *unused)
{
    trk_error err;

    SHIM_UNUSED(unused);
    return done(trk_ctx_set_keylog_from_env(self->ctx, &err), &err, "keylog");
}

static PyObject *
Context__set_renegotiation(ContextObject *self, PyObject *args)
{
    int allow_client, none;
    trk_error err;

    if (!PyArg_ParseTuple(args, "pp:_set_renegotiation", &allow_client, &none))
        return NULL;
    return done(trk_ctx_set_renegotiation(self->ctx, allow_client, none, &err), &err,
                "renegotiation");
}

/* A sequence of str/bytes protocol names -> trk_ctx_set_alpn. */
static PyObject *
Context__set_alpn(ContextObject *self, PyObject *arg)
{
    PyObject *seq, *names = NULL, *result = NULL;
    const char **protos = NULL;
    Py_ssize_t i, n;
    trk_error err;

    if (PyUnicode_Check(arg) || PyBytes_Check(arg))
        return PyErr_Format(PyExc_TypeError,
                            "alpn must be a list of protocol names, not a single %.100s",
                            Py_TYPE(arg)->tp_name);
    seq = PySequence_Fast(arg, "alpn must be a list of protocol names");
    if (seq == NULL)
        return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    names = PyList_New(n);
    protos = PyMem_Calloc((size_t)n + 1, sizeof *protos);
    if (names == NULL || protos == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    for (i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i), *b;

        if (PyUnicode_Check(item))
            b = PyUnicode_AsUTF8String(item);
        else if (PyBytes_Check(item))
            b = Py_NewRef(item);
        else {
            PyErr_Format(PyExc_TypeError, "alpn names must be str or bytes, not %.100s",
                         Py_TYPE(item)->tp_name);
            goto out;
        }
        if (b == NULL)
            goto out;
        PyList_SET_ITEM(names, i, b);
        if (strlen(PyBytes_AS_STRING(b)) != (size_t)PyBytes_GET_SIZE(b)) {
            PyErr_SetString(PyExc_ValueError, "alpn: a protocol name contains NUL");
            goto out;
        }
        protos[i] = PyBytes_AS_STRING(b);
    }
    result = done(trk_ctx_set_alpn(self->ctx, protos, (size_t)n, &err), &err, "alpn");
out:
    PyMem_Free(protos);
    Py_XDECREF(names);
    Py_DECREF(seq);
    return result;
}

/* ---- connections ------------------------------------------------------- */

/*
 * server_hostname: None -> NULL; a str -> its text, an internationalized name in its
 * IDNA form ("bücher.example" -> "xn--bcher-kva.example"), as ssl does: SNI and
 * certificate names carry ASCII only, and the core refuses anything else. *keep
 * gets what owns an IDNA form (else NULL) for the caller to release after the core
 * call. NULL with an exception set on failure (tell it from None by PyErr_Occurred).
 */
const char *
shim_hostname(PyObject *obj, PyObject **keep)
{
    const char *s;
    Py_ssize_t len;

    *keep = NULL;
    if (obj == NULL || obj == Py_None)
        return NULL;
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "server_hostname must be a str or None, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    if (PyUnicode_IS_ASCII(obj)) {
        s = PyUnicode_AsUTF8AndSize(obj, &len);
    } else {
        *keep = PyUnicode_AsEncodedString(obj, "idna", NULL);
        if (*keep == NULL) {
            PyObject *type, *value, *tb;

            if (!PyErr_ExceptionMatches(PyExc_UnicodeError))
                return NULL;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            PyErr_Format(PyExc_ValueError, "server_hostname: %R has no IDNA form (%S)",
                         obj, value != NULL ? value : Py_None);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            return NULL;
        }
        s = PyBytes_AS_STRING(*keep);
        len = PyBytes_GET_SIZE(*keep);
    }
    if (s != NULL && (size_t)len != strlen(s)) {
        PyErr_SetString(PyExc_ValueError, "server_hostname contains NUL");
        Py_CLEAR(*keep);
        return NULL;
    }
    return s;
}

/* The interrupt check of the wait for the TCP connection: as a connection's
 * (connection.c), with the exception a handler raised kept here until the core
 * call returns. */
static int
connect_interrupted(void *userdata)
{
    PyObject **parked = userdata;
    PyGILState_STATE gil = PyGILState_Ensure();
    int rc = 0;

    if (PyErr_CheckSignals() < 0) {
        shim_park_exception(parked);
        rc = 1;
    }
    PyGILState_Release(gil);
    return rc;
}

static PyObject *
Context_connect(ContextObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"host", "port", "server_hostname", "timeout", NULL};
    const char *host, *sni = NULL;
    PyObject *sni_obj = Py_None, *sni_keep;
    int port;
    double timeout = TRK_TIMEOUT_NONE;
    trk_conn *conn = NULL;
    trk_error err;
    trk_status st;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "si|OO&:connect", kwlist, &host, &port,
                                     &sni_obj, shim_timeout_converter, &timeout))
        return NULL;
    sni = shim_hostname(sni_obj, &sni_keep);
    if (sni == NULL && PyErr_Occurred())
        return NULL;
    PyObject *parked = NULL;
    Py_BEGIN_ALLOW_THREADS
    st = trk_conn_new_connect_checked(self->ctx, host, port, timeout, sni,
                                      connect_interrupted, &parked, &conn, &err);
    Py_END_ALLOW_THREADS
    Py_XDECREF(sni_keep);
    if (parked != NULL) {       /* Ctrl-C: KeyboardInterrupt, not a tlsrekey error */
        if (conn != NULL)
            trk_conn_free(conn);
        PyErr_SetObject((PyObject *)Py_TYPE(parked), parked);
        Py_DECREF(parked);
        return NULL;
    }
    if (st != TRK_OK)
        return shim_raise(st, &err, NULL);
    return (PyObject *)shim_connection_new(conn, (PyObject *)self, NULL);
}

static PyObject *
Context_wrap(ContextObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"sock", "server_hostname", NULL};
    PyObject *sock, *sni_obj = Py_None, *sni_keep, *t, *fileno = NULL, *c;
    const char *sni;
    double timeout = TRK_TIMEOUT_NONE;
    int fd;
    trk_conn *conn = NULL;
    trk_error err;
    trk_status st;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:wrap", kwlist, &sock, &sni_obj))
        return NULL;
    fd = PyObject_AsFileDescriptor(sock);
    if (fd < 0)
        return NULL;
    /* Follow the socket's own mode: gettimeout() None is blocking, 0.0 non-blocking,
     * > 0 a timeout. An object without gettimeout() (a raw fd) is blocking. */
    if (PyObject_HasAttrString(sock, "gettimeout")) {
        t = PyObject_CallMethod(sock, "gettimeout", NULL);
        if (t == NULL)
            return NULL;
        if (!shim_timeout_converter(t, &timeout)) {
            Py_DECREF(t);
            return NULL;
        }
        Py_DECREF(t);
    }
    sni = shim_hostname(sni_obj, &sni_keep);
    if (sni == NULL && PyErr_Occurred())
        return NULL;
    st = trk_conn_new_fd(self->ctx, fd, timeout, sni, &conn, &err);
    Py_XDECREF(sni_keep);
    if (st != TRK_OK)
        return shim_raise(st, &err, NULL);
    /* A socket object is asked for its fd before each call that uses it (its owner
     * may close it); an int is the caller's to keep open. */
    if (!PyLong_Check(sock)) {
        fileno = PyObject_GetAttrString(sock, "fileno");
        if (fileno == NULL) {
            trk_conn_free(conn);
            return NULL;
        }
    }
    c = (PyObject *)shim_connection_new(conn, (PyObject *)self, fileno);
    Py_XDECREF(fileno);
    return c;
}

static PyObject *
Context_memory(ContextObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"server_hostname", NULL};
    PyObject *sni_obj = Py_None, *sni_keep;
    const char *sni;
    trk_conn *conn = NULL;
    trk_error err;
    trk_status st;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:memory", kwlist, &sni_obj))
        return NULL;
    sni = shim_hostname(sni_obj, &sni_keep);
    if (sni == NULL && PyErr_Occurred())
        return NULL;
    st = trk_conn_new_memory(self->ctx, sni, &conn, &err);
    Py_XDECREF(sni_keep);
    if (st != TRK_OK)
        return shim_raise(st, &err, NULL);
    return (PyObject *)shim_connection_new(conn, (PyObject *)self, NULL);
}

static PyObject *
Context_get_role(ContextObject *self, void *closure)
{
    SHIM_UNUSED(closure);
    return PyUnicode_FromString(trk_role_name(trk_ctx_role(self->ctx)));
}

static PyObject *
Context_get_is_dtls(ContextObject *self, void *closure)
{
    SHIM_UNUSED(closure);
    return PyBool_FromLong(trk_ctx_is_dtls(self->ctx));
}

static PyObject *
Context_get_check_hostname(ContextObject *self, void *closure)
{
    SHIM_UNUSED(closure);
    return PyBool_FromLong(trk_ctx_check_hostname(self->ctx));
}

static PyMethodDef Context_methods[] = {
    {"connect", SHIM_METH(Context_connect), METH_VARARGS | METH_KEYWORDS,
     "connect(host, port, server_hostname=None, timeout=None) -> Connection\n\n"
     "Open a TCP connection to host:port (each resolved address in turn) and return\n"
     "a Connection over it; the handshake happens at the first I/O or\n"
     "do_handshake(). server_hostname (default: host) is the SNI name and the name\n"
     "checked against the certificate. timeout: None blocks, a number of seconds\n"
     "bounds the connect and every later call (TimeoutError), 0 is non-blocking.\n"
     "The socket belongs to the Connection: close() closes it. TCP only: for DTLS,\n"
     "connect a UDP socket yourself and wrap() it."},
    {"wrap", SHIM_METH(Context_wrap), METH_VARARGS | METH_KEYWORDS,
     "wrap(sock, server_hostname=None) -> Connection\n\n"
     "A Connection over an already connected stream socket (anything with fileno()).\n"
     "It follows the socket's mode at this moment: gettimeout() None is blocking, a\n"
     "number is a timeout per call, 0.0 is non-blocking (WantReadError /\n"
     "WantWriteError); change it later with Connection.settimeout(). The Connection\n"
     "keeps the socket object alive and never closes it; a call that uses it after\n"
     "its owner closed it raises StateError and fails the Connection. The role (client or\n"
     "server) is the context's; a client checking host names needs\n"
     "server_hostname. A DTLS context takes a connected UDP socket instead\n"
     "(connect() it first, a server too: one socket per client). The wrong kind of\n"
     "socket (UDP for TLS, TCP for DTLS, a listening one) is a ValueError."},
    {"memory", SHIM_METH(Context_memory), METH_VARARGS | METH_KEYWORDS,
     "memory(server_hostname=None) -> Connection\n\n"
     "A Connection over memory buffers, for event loops: feed() it the peer's bytes,\n"
     "drain() what it wants to send. Calls raise WantReadError when they need more\n"
     "input. Any call may produce output (a read can answer a key update request or\n"
     "continue a renegotiation), so drain after every call. On a DTLS context each\n"
     "feed() is one datagram and each drain() returns one datagram (b\"\" when\n"
     "none): drain until b\"\"."},
    {"_set_min_version", (PyCFunction)Context__set_min_version, METH_O,
     "Set the lowest protocol version (\"TLSv1.2\"; None: OpenSSL's lowest)."},
    {"_set_max_version", (PyCFunction)Context__set_max_version, METH_O,
     "Set the highest protocol version (\"TLSv1.3\"; None: OpenSSL's highest)."},
    {"_set_ciphers", (PyCFunction)Context__set_ciphers, METH_O,
     "Set the TLS 1.2 cipher list (OpenSSL syntax)."},
    {"_set_ciphersuites", (PyCFunction)Context__set_ciphersuites, METH_O,
     "Set the TLS 1.3 ciphersuites (OpenSSL syntax)."},
    {"_set_groups", (PyCFunction)Context__set_groups, METH_O,
     "Set the key exchange groups (\"X25519:P-256\")."},
    {"_use_certificate", (PyCFunction)Context__use_certificate, METH_O,
     "Use a certificate (chain): a path, or PEM bytes."},
    {"_use_private_key", (PyCFunction)Context__use_private_key, METH_O,
     "Use the private key matching the certificate: a path, or PEM bytes."},
    {"_check", (PyCFunction)Context__check, METH_NOARGS,
     "Refuse a context whose connections could not work (a server without its\n"
     "certificate and key)."},
    {"_load_verify", (PyCFunction)Context__load_verify, METH_VARARGS,
     "_load_verify(cafile=None, capath=None): add trust anchors."},
    {"_load_default_verify", (PyCFunction)Context__load_default_verify, METH_NOARGS,
     "Trust the system's certificate store."},
    {"_set_verify", (PyCFunction)Context__set_verify, METH_O,
     "Set the verify mode: 0 none, 1 optional (servers), 2 required."},
    {"_set_check_hostname", (PyCFunction)Context__set_check_hostname, METH_O,
     "Client: check the certificate against server_hostname."},
    {"_set_session_tickets", (PyCFunction)Context__set_session_tickets, METH_O,
     "TLS 1.2 session tickets on or off (SSL_OP_NO_TICKET)."},
    {"_set_session_cache", (PyCFunction)Context__set_session_cache, METH_O,
     "Server: keep a session cache."},
    {"_set_num_tickets", (PyCFunction)Context__set_num_tickets, METH_O,
     "Server: TLS 1.3 session tickets sent after each handshake."},
    {"_set_keylog", (PyCFunction)Context__set_keylog, METH_O,
     "Append NSS key log lines to this path (None stops)."},
    {"_set_keylog_from_env", (PyCFunction)Context__set_keylog_from_env, METH_NOARGS,
     "Append NSS key log lines to the file named by SSLKEYLOGFILE, if set."},
    {"_set_renegotiation", (PyCFunction)Context__set_renegotiation, METH_VARARGS,
     "_set_renegotiation(allow_client, no_renegotiation): renegotiation policy."},
    {"_set_ignore_unexpected_eof", (PyCFunction)Context__set_ignore_unexpected_eof,
     METH_O, "Treat EOF without close_notify as a clean close."},
    {"_set_release_buffers", (PyCFunction)Context__set_release_buffers, METH_O,
     "Free record buffers of idle connections."},
    {"_set_rekey_policy", SHIM_METH(Context__set_rekey_policy),
     METH_VARARGS | METH_KEYWORDS,
     "_set_rekey_policy(**policy): the default rekey policy of new connections."},
    {"_set_alpn", (PyCFunction)Context__set_alpn, METH_O,
     "Set the ALPN protocol names, in order of preference."},
    {"_set_cookie_exchange", (PyCFunction)Context__set_cookie_exchange,
     METH_O, "DTLS server: answer a first ClientHello with a HelloVerifyRequest."},
    {"_set_dtls_initial_timeout", (PyCFunction)Context__set_dtls_initial_timeout,
     METH_O, "DTLS: seconds before a flight is first retransmitted (0: 1 s)."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef Context_getset[] = {
    {"role", (getter)Context_get_role, NULL,
     "\"client\" or \"server\": the role of every connection made from it.", NULL},
    {"check_hostname", (getter)Context_get_check_hostname, NULL,
     "Whether client connections check the certificate against server_hostname.",
     NULL},
    {"is_dtls", (getter)Context_get_is_dtls, NULL,
     "Whether the context is DTLS 1.2 (datagrams over UDP) rather than TLS.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

PyTypeObject Context_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tlsrekey._tlsrekey.Context",
    .tp_basicsize = sizeof(ContextObject),
    .tp_weaklistoffset = offsetof(ContextObject, weakreflist),
    .tp_dealloc = (destructor)Context_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Context(role, *, dtls=False)\n\n"
              "TLS settings shared by connections: an OpenSSL SSL_CTX. Make one with\n"
              "tlsrekey.Context.client(...) or tlsrekey.Context.server(...); this bare\n"
              "constructor gives the safe defaults of the role (\"client\" or\n"
              "\"server\") with nothing loaded; dtls=True makes a DTLS 1.2 context\n"
              "(datagrams over UDP). A context may be dropped before its\n"
              "connections: each connection keeps it alive.",
    .tp_methods = Context_methods,
    .tp_getset = Context_getset,
    .tp_new = Context_new,
};
