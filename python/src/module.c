/*
 * module.c - tlsrekey._tlsrekey: module init and the module-level functions.
 */
#include <string.h>

#include "shim.h"

PyObject *shim_KeyUpdateType;

static PyObject *
module_pair(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"client_ctx", "server_ctx", "server_hostname", NULL};
    ContextObject *cctx, *sctx;
    PyObject *sni_obj = Py_None, *sni_keep;
    const char *sni = NULL;
    trk_conn *cconn = NULL, *sconn = NULL;
    ConnectionObject *client, *server;
    trk_error err;
    trk_status st;

    SHIM_UNUSED(module);
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!|O:_pair", kwlist, &Context_Type,
                                     &cctx, &Context_Type, &sctx, &sni_obj))
        return NULL;
    sni = shim_hostname(sni_obj, &sni_keep);
    if (sni == NULL && PyErr_Occurred())
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    st = trk_pair_new(cctx->ctx, sctx->ctx, sni, &cconn, &sconn, &err);
    Py_END_ALLOW_THREADS
    Py_XDECREF(sni_keep);
    if (st != TRK_OK)
        return shim_raise(st, &err, NULL);

    client = shim_connection_new(cconn, (PyObject *)cctx, NULL);
    if (client == NULL) {
        trk_conn_free(sconn);
        return NULL;
    }
    server = shim_connection_new(sconn, (PyObject *)sctx, NULL);
    if (server == NULL) {
        Py_DECREF(client);
        return NULL;
    }
    /* Both ends share one lock: a call on one end moves the other. */
    if (shim_connection_join(client, server) < 0) {
        Py_DECREF(client);
        Py_DECREF(server);
        return NULL;
    }
    return Py_BuildValue("(NN)", client, server);
}

static PyObject *
module_make_test_cert(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"common_name", NULL};
    const char *cn = "localhost";
    char *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;
    Py_ssize_t cn_len = 9;
    PyObject *r;
    trk_error err;
    trk_status st;

    SHIM_UNUSED(module);
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|s#:make_test_cert", kwlist, &cn,
                                     &cn_len))
        return NULL;
    if ((size_t)cn_len != strlen(cn))
        return PyErr_Format(PyExc_ValueError, "common_name contains NUL");
    Py_BEGIN_ALLOW_THREADS
    st = trk_make_test_cert(cn, &cert, &cert_len, &key, &key_len, &err);
    Py_END_ALLOW_THREADS
    if (st != TRK_OK)
        return shim_raise(st, &err, "common_name");
    r = Py_BuildValue("(y#y#)", cert, (Py_ssize_t)cert_len, key, (Py_ssize_t)key_len);
    trk_free(cert);
    trk_free(key);
    return r;
}

static PyObject *
module_status_names(PyObject *module, PyObject *unused)
{
    PyObject *t = PyTuple_New(TRK_STATUS_COUNT);
    int s;

    SHIM_UNUSED(module);
    SHIM_UNUSED(unused);
    if (t == NULL)
        return NULL;
    for (s = 0; s < TRK_STATUS_COUNT; s++) {
        const char *name = trk_status_name((trk_status)s);
        PyObject *n = name ? PyUnicode_FromString(name) : Py_NewRef(Py_None);
        if (n == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, s, n);
    }
    return t;
}

static PyMethodDef module_methods[] = {
    {"_pair", SHIM_METH(module_pair), METH_VARARGS | METH_KEYWORDS,
     "_pair(client_ctx, server_ctx, server_hostname=None) -> (client, server)\n\n"
     "Two connections joined in memory, handshaken. tlsrekey.pair() builds the\n"
     "contexts and calls this."},
    {"make_test_cert", SHIM_METH(module_make_test_cert), METH_VARARGS | METH_KEYWORDS,
     "make_test_cert(common_name=\"localhost\") -> (cert_pem, key_pem)\n\n"
     "A throwaway self-signed ECDSA P-256 certificate and its key, as PEM bytes,\n"
     "valid from yesterday for 30 days. The name is also in the subjectAltName\n"
     "(\"localhost\" also gets 127.0.0.1 and ::1). For tests and the REPL:\n"
     "Context.server(cert=cert_pem, key=key_pem), Context.client(cafile=cert_pem)."},
    {"_testing_set_aead_scale", (PyCFunction)shim_testing_set_aead_scale, METH_O,
     "_testing_set_aead_scale(divisor): divide the AEAD record limits (tests only)."},
    {"_status_names", (PyCFunction)module_status_names, METH_NOARGS,
     "The core's status names, indexed by status value."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tlsrekey._tlsrekey",
    .m_doc = "The C half of tlsrekey: the CPython shim over the tlsrekey core.\n"
             "Import tlsrekey, not this module.",
    .m_size = -1,
    .m_methods = module_methods,
};

/* KeyUpdateType, an IntEnum with OpenSSL's values; member names from the core's
 * names ("not_requested" -> NOT_REQUESTED). */
static PyObject *
make_key_update_type(void)
{
    static const int values[] = {TRK_KEY_UPDATE_NONE, TRK_KEY_UPDATE_NOT_REQUESTED,
                                 TRK_KEY_UPDATE_REQUESTED};
    PyObject *enum_mod, *int_enum, *members, *kwargs = NULL, *args = NULL, *cls = NULL;
    size_t i;

    enum_mod = PyImport_ImportModule("enum");
    if (enum_mod == NULL)
        return NULL;
    int_enum = PyObject_GetAttrString(enum_mod, "IntEnum");
    Py_DECREF(enum_mod);
    if (int_enum == NULL)
        return NULL;
    members = PyList_New(0);
    if (members == NULL)
        goto out;
    for (i = 0; i < sizeof values / sizeof values[0]; i++) {
        const char *name = trk_key_update_type_name(values[i]);
        PyObject *lower, *upper, *pair;

        if (name == NULL) {
            PyErr_Format(PyExc_SystemError, "core has no name for key update type %d",
                         values[i]);
            goto out;
        }
        lower = PyUnicode_FromString(name);
        if (lower == NULL)
            goto out;
        upper = PyObject_CallMethod(lower, "upper", NULL);
        Py_DECREF(lower);
        if (upper == NULL)
            goto out;
        pair = Py_BuildValue("(Ni)", upper, values[i]);
        if (pair == NULL || PyList_Append(members, pair) < 0) {
            Py_XDECREF(pair);
            goto out;
        }
        Py_DECREF(pair);
    }
    args = Py_BuildValue("(sO)", "KeyUpdateType", members);
    kwargs = Py_BuildValue("{s:s,s:s}", "module", "tlsrekey", "qualname",
                           "KeyUpdateType");
    if (args == NULL || kwargs == NULL)
        goto out;
    cls = PyObject_Call(int_enum, args, kwargs);
    if (cls != NULL) {
        PyObject *doc = PyUnicode_FromString(
            "The key update types of the SSL_key_update manual page (section 3), with OpenSSL's values.\n\n"
            "NONE (-1): nothing scheduled (get_key_update_type()); not a valid\n"
            "argument to key_update(). NOT_REQUESTED (0): update our sending keys.\n"
            "REQUESTED (1): also ask the peer to update its sending keys.");
        if (doc == NULL || PyObject_SetAttrString(cls, "__doc__", doc) < 0)
            Py_CLEAR(cls);
        Py_XDECREF(doc);
    }
out:
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    Py_XDECREF(members);
    Py_DECREF(int_enum);
    return cls;
}

PyMODINIT_FUNC
PyInit__tlsrekey(void)
{
    PyObject *m;
    static const struct { const char *name; const char *member; } constants[] = {
        {"KEY_UPDATE_NONE", "NONE"},
        {"KEY_UPDATE_NOT_REQUESTED", "NOT_REQUESTED"},
        {"KEY_UPDATE_REQUESTED", "REQUESTED"},
    };
    size_t i;

    if (PyType_Ready(&Context_Type) < 0 || PyType_Ready(&Connection_Type) < 0)
        return NULL;
    shim_locks_init();
    m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddType(m, &Context_Type) < 0 ||
        PyModule_AddType(m, &Connection_Type) < 0 || shim_errors_init(m) < 0)
        goto fail;

    shim_KeyUpdateType = make_key_update_type();
    if (shim_KeyUpdateType == NULL ||
        PyModule_AddObjectRef(m, "KeyUpdateType", shim_KeyUpdateType) < 0)
        goto fail;
    for (i = 0; i < sizeof constants / sizeof constants[0]; i++) {
        PyObject *v = PyObject_GetAttrString(shim_KeyUpdateType, constants[i].member);
        if (v == NULL || PyModule_AddObject(m, constants[i].name, v) < 0) {
            Py_XDECREF(v);
            goto fail;
        }
    }
    if (PyModule_AddStringConstant(m, "__version__", TRK_VERSION_STRING) < 0 ||
        PyModule_AddStringConstant(m, "OPENSSL_VERSION", trk_openssl_version()) < 0)
        goto fail;
    return m;

fail:
    Py_DECREF(m);
    return NULL;
}
