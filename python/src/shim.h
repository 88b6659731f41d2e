/*
 * shim.h - what the files of the CPython shim share.
 *
 * The shim converts Python arguments, calls a trk_ function of the core
 * (csrc/tlsrekey.h, the only core header included) and converts its status. It never
 * calls OpenSSL itself and never reads errno: a failure is always a (trk_status,
 * trk_error) pair, turned into an exception by shim_raise() in errors.c.
 *
 * Files: module.c (init, module functions), errors.c (exceptions), context.c
 * (Context), connection.c (Connection, its lock, the event trampoline).
 */
#ifndef TLSREKEY_SHIM_H
#define TLSREKEY_SHIM_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>

#include "tlsrekey.h"

#define SHIM_UNUSED(x) ((void)(x))
/* PyMethodDef wants a PyCFunction; going through void (*)(void) keeps
 * -Wcast-function-type quiet for METH_VARARGS | METH_KEYWORDS functions. */
#define SHIM_METH(fn) ((PyCFunction)(void (*)(void))(fn))

/* ------------------------------------------------------------------------- */
/* Objects                                                                    */
/* ------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    trk_ctx *ctx;             /* one reference, dropped in dealloc */
    PyObject *weakreflist;    /* a cache of contexts keyed weakly, as for ssl's */
} ContextObject;

/*
 * A Connection's lock serialises the connections the core must see driven by one
 * thread: one connection alone, or both ends of a pair (the core moves the peer end
 * forward from inside a call on the other). It is one word, the thread ident of the
 * holder (0 when free), changed only with the GIL held (connection.c says how a
 * thread waits for it). The word lets a Python event callback, which runs inside a
 * core call on the owning thread, read its connection without deadlocking on the
 * lock.
 */
struct ConnectionObject;
/* What the two ends of a pair share. */
typedef struct shim_pair {
    unsigned long owner;      /* the lock of both ends */
    struct ConnectionObject *end[2]; /* borrowed: client, server; an end's dealloc
                                        clears its own (the core handles a freed
                                        peer, so no strong reference is kept) */
    int refs;                 /* ends not yet freed */
} shim_pair;

/* 80 bytes (96 with the GC header): with 10k idle connections every word counts
 * (bench/PROPOSALS.md, P6). */
typedef struct ConnectionObject {
    PyObject_HEAD
    trk_conn *conn;           /* owned; closed by close(), freed in dealloc */
    unsigned long owner;      /* the lock, unless the connection is a pair end */
    PyObject *context;        /* strong: the Context it was made from */
    PyObject *fileno;         /* strong: the bound fileno() of the socket object
                                 given to wrap() (it keeps the socket alive), or NULL */
    PyObject *callback;       /* strong: the event callback, or NULL */
    PyObject *parked;         /* an exception the callback raised, not yet re-raised */
    shim_pair *pair;          /* a pair end: the lock and the other end; else NULL */
    PyObject *weakreflist;
} ConnectionObject;

extern PyTypeObject Context_Type;
extern PyTypeObject Connection_Type;

/* The KeyUpdateType IntEnum, made in module.c. */
extern PyObject *shim_KeyUpdateType;

/* ------------------------------------------------------------------------- */
/* errors.c                                                                   */
/* ------------------------------------------------------------------------- */

/* Creates tlsrekey.Error and one subclass per core status, adds them to the
 * module. 0 or -1 with an exception set. */
int shim_errors_init(PyObject *module);
/* Moves the exception being raised into *slot, unless one is kept there already
 * (then it is dropped): re-raised once the core call has returned. */
void shim_park_exception(PyObject **slot);
/* Once per process: the connection locks follow fork() (connection.c). */
void shim_locks_init(void);

/*
 * THE function that raises from a core status. `err` is the record the core filled
 * (NULL: only the status is known). `argname`, for TRK_ARG, names the argument in
 * the ValueError. Always returns NULL, so `return shim_raise(...)` reads naturally.
 */
PyObject *shim_raise(trk_status status, const trk_error *err, const char *argname);

/* A StateError for a misuse only the shim can see (it has no core status of its own
 * to come from); goes through shim_raise with a record it fills. */
PyObject *shim_raise_state(const char *reason, const char *message);

/* A server_hostname argument as the core takes it (context.c): None -> NULL, a str
 * -> ASCII, an internationalized name in its IDNA form; *keep owns what it returns
 * (NULL when nothing needs releasing). NULL with an exception set on failure. */
const char *shim_hostname(PyObject *obj, PyObject **keep);

/* ------------------------------------------------------------------------- */
/* context.c / connection.c                                                   */
/* ------------------------------------------------------------------------- */

/* A new Connection around `conn` (stolen: freed on failure), holding `context`
 * and `fileno` (may be NULL), the bound fileno() of wrap()'s socket object. NULL
 * with an exception set on failure. */
ConnectionObject *shim_connection_new(trk_conn *conn, PyObject *context,
                                      PyObject *fileno);
/* Joins two new Connections as the ends of a pair (one lock, each the other's
 * peer). -1 with an exception set on failure. */
int shim_connection_join(ConnectionObject *client, ConnectionObject *server);

/* Converters for PyArg_Parse "O&": a timeout (None -> TRK_TIMEOUT_NONE, a number
 * >= 0 -> seconds) into a double. */
int shim_timeout_converter(PyObject *obj, void *out);

/* policy.c: rekey policy keywords <-> trk_rekey_policy. */
int shim_parse_policy(PyObject *args, PyObject *kwds, const char *fname,
                      trk_rekey_policy *policy);
PyObject *shim_policy_dict(const trk_rekey_policy *policy);
PyObject *shim_testing_set_aead_scale(PyObject *module, PyObject *arg);

#endif /* TLSREKEY_SHIM_H */
