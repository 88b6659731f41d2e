/*
 * connection.c - the Connection type: a trk_conn, its lock, its event trampoline.
 *
 * Every method follows one pattern:
 *
 *     entered = conn_enter(self, driving);     take the connection's lock
 *     Py_BEGIN_ALLOW_THREADS                   (calls that block or do crypto)
 *     st = trk_conn_...(self->conn, ..., &err);
 *     Py_END_ALLOW_THREADS
 *     conn_finish(self, entered, st, &err, argname);   unlock, raise if st != OK
 *
 * The lock is shared by both ends of a pair (the core moves one end forward from
 * inside a call on the other), and a call on a pair end holds a reference to the peer
 * object for its duration, so the peer cannot be freed under the core's feet.
 *
 * The event callback runs inside a core call, on the calling thread, with the GIL
 * released by that call: the trampoline takes the GIL, calls the Python function and
 * parks any exception on the Connection; the core call then returns TRK_CALLBACK and
 * conn_finish re-raises the parked exception.
 */
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "shim.h"

#include <stdint.h>
#include <time.h>

/* ------------------------------------------------------------------------- */
/* The lock                                                                   */
/* ------------------------------------------------------------------------- */

/*
 * A connection's lock is one word (shim.h): the Connection's own `owner`, or for
 * the ends of a pair the one in their shim_pair. Taking a free lock is a store made
 * with the GIL held; nothing is allocated per connection (a PyThread lock each cost
 * 80 bytes with its allocation, bench/PROPOSALS.md P6). Every lock_acquire and
 * lock_release runs with the GIL held.
 *
 * A thread that finds the lock taken joins the queue `waiting` and sleeps with the
 * GIL released on a PyThread lock made for that one wait (only then, when one
 * connection is used from two threads at once, is anything allocated). Releasing
 * a lock hands it to the first thread queued for it, which is woken already owning
 * it: the releasing thread, still holding the GIL, cannot take it back at once and
 * starve the others (a thread in a loop of small calls would, since a waiter needs
 * the GIL before it can look at the word).
 */
typedef struct shim_waiter {
    PyThread_type_lock wake;        /* held by the waiter; released to wake it */
    unsigned long ident;            /* the waiting thread */
    unsigned long *word;            /* the lock it waits for */
    struct shim_waiter *next;
} shim_waiter;

static shim_waiter *waiting;        /* first come first; GIL held */

/*
 * The lock word names its holder as the thread ident times 16 plus the process's
 * fork generation (1 to 15), which the child of a fork() moves on: a word written
 * before the fork by another thread, which does not exist in the child, is then
 * told apart from a live one, and the connection refused there instead of waited
 * for forever. The waiters of the parent do not exist in the child either.
 */
static unsigned long fork_generation = 1;

static void
after_fork_in_child(void)
{
    fork_generation = fork_generation % 15 + 1;
    waiting = NULL;
}

void
shim_locks_init(void)
{
    static int done;

    if (!done) {
        done = 1;
        pthread_atfork(NULL, NULL, after_fork_in_child);
    }
}

static unsigned long
holder_me(void)
{
    return PyThread_get_thread_ident() * 16 + fork_generation;
}

static int
held_before_fork(unsigned long word)
{
    return word != 0 && word % 16 != fork_generation;
}

static unsigned long *
lock_word(ConnectionObject *self)
{
    return self->pair != NULL ? &self->pair->owner : &self->owner;
}

/* The other end of a pair, NULL for any other connection or once it was freed. */
static ConnectionObject *
peer_of(ConnectionObject *self)
{
    shim_pair *pair = self->pair;

    if (pair == NULL)
        return NULL;
    return pair->end[pair->end[0] == self ? 1 : 0];
}

/* Takes the lock, waiting with the GIL released when another thread has it. An
 * interruptible wait runs Python's signal handlers when a signal arrives, and
 * returns -1 with their exception set (Ctrl-C: KeyboardInterrupt) instead of
 * waiting on; otherwise returns 0 holding the lock. LEAVE_ON_SIGNAL returns -1 at
 * any signal, without running the handlers (the caller runs them once it holds
 * nothing). A lock a thread of the parent
 * held at fork() is never given back in the child: -2 (interruptible), or taken
 * over (the GC and dealloc, which only free). The waiting list and the hand-over
 * are changed only with the GIL held. */
enum { LEAVE_ON_SIGNAL = 2 };

static int
lock_acquire_ex(ConnectionObject *self, int interruptible)
{
    unsigned long *word = lock_word(self), me = holder_me();
    shim_waiter w, **tail, **pw;
    PyLockStatus r;

    if (held_before_fork(*word)) {
        if (interruptible)
            return -2;
        *word = 0;
    }

    while (*word != 0) {
        w.wake = PyThread_allocate_lock();
        if (w.wake == NULL || !PyThread_acquire_lock(w.wake, NOWAIT_LOCK)) {
            /* Out of memory: nothing to be woken by; look again a little later. */
            struct timespec ts = {0, 1000000};

            if (w.wake != NULL)
                PyThread_free_lock(w.wake);
            Py_BEGIN_ALLOW_THREADS
            nanosleep(&ts, NULL);
            Py_END_ALLOW_THREADS
            continue;
        }
        w.ident = me;
        w.word = word;
        w.next = NULL;
        for (tail = &waiting; *tail != NULL; tail = &(*tail)->next)
            ;
        *tail = &w;
        for (;;) {
            Py_BEGIN_ALLOW_THREADS                  /* until lock_release hands over */
            r = PyThread_acquire_lock_timed(w.wake, -1, interruptible);
            Py_END_ALLOW_THREADS
            if (r == PY_LOCK_ACQUIRED)
                break;
            if (*word == me) {                      /* handed over meanwhile */
                PyThread_acquire_lock(w.wake, WAIT_LOCK);
                break;
            }
            if (interruptible == LEAVE_ON_SIGNAL || PyErr_CheckSignals() < 0) {
                /* leave the queue, lock not taken */
                for (pw = &waiting; *pw != NULL; pw = &(*pw)->next) {
                    if (*pw == &w) {
                        *pw = w.next;
                        break;
                    }
                }
                PyThread_release_lock(w.wake);
                PyThread_free_lock(w.wake);
                return -1;
            }
        }
        PyThread_release_lock(w.wake);
        PyThread_free_lock(w.wake);
        return 0;                                   /* *word == me */
    }
    *word = me;
    return 0;
}

static void
lock_acquire(ConnectionObject *self)
{
    (void)lock_acquire_ex(self, 0);
}

static void
lock_release(ConnectionObject *self)
{
    unsigned long *word = lock_word(self);
    shim_waiter **pw;

    for (pw = &waiting; *pw != NULL; pw = &(*pw)->next) {
        shim_waiter *w = *pw;

        if (w->word == word) {
            *pw = w->next;
            *word = w->ident;
            /* the waiter needs the GIL to go on: w stays valid through this call */
            PyThread_release_lock(w->wake);
            return;
        }
    }
    *word = 0;
}

enum { ENTER_FAILED = -1, ENTER_REENTRANT = 0, ENTER_LOCKED = 1 };

/* The connection whose wait a signal interrupted, while Python's handlers run for
 * it (interrupt_trampoline); changed and read with the GIL held. */
static ConnectionObject *interrupted_wait;

/*
 * Before a core call. `driving`: the call does I/O or changes the connection.
 * From inside an event callback of this connection (or of its pair) the lock is
 * already held by this very thread: reading is allowed (ENTER_REENTRANT, no lock
 * taken), driving is a StateError (the core forbids it; waiting would deadlock).
 */
static int
conn_enter(ConnectionObject *self, int driving)
{
    if (*lock_word(self) == holder_me()) {
        if (driving && interrupted_wait != NULL &&
            lock_word(interrupted_wait) == lock_word(self)) {
            shim_raise_state("called from a signal handler",
                             "a signal handler cannot drive the connection whose "
                             "waiting call the signal interrupted: that call is "
                             "still under way (raise from the handler to end it)");
            return ENTER_FAILED;
        }
        if (driving) {
            shim_raise_state("called from an event callback",
                             "a connection cannot be driven from inside an event "
                             "callback of its own or of its pair");
            return ENTER_FAILED;
        }
        return ENTER_REENTRANT;
    }
    switch (lock_acquire_ex(self, 1)) {
    case -1:
        return ENTER_FAILED;
    case -2:
        shim_raise_state("in use at fork",
                         "this connection was in use by another thread when the "
                         "process forked: in this process its state is unknown and "
                         "it cannot be used (close it; the parent's goes on)");
        return ENTER_FAILED;
    default:
        break;
    }
    Py_XINCREF(peer_of(self));
    return ENTER_LOCKED;
}

static void conn_leave(ConnectionObject *self, int entered);
static int conn_finish(ConnectionObject *self, int entered, trk_status st,
                       const trk_error *err, const char *argname);
static void park_exception(ConnectionObject *self);

/*
 * conn_enter for a call that uses the socket. The socket object given to wrap() is
 * its owner's, who may have closed it since: its number may be another file's by
 * now. The object's fileno() is asked each time (the core compares the answer with
 * its own fd and fails the connection when they differ, trk_conn_check_fd): the
 * owner closes the object, not the number, so the object is the one to ask. The
 * method is bound once, at wrap(): a call of it costs ~60 instructions per I/O call,
 * a look-up by name ~300 (callgrind). An exception from fileno() counts as closed
 * and becomes the StateError's __context__. An int given to wrap() has no owner
 * object to ask.
 */
static int
conn_enter_io(ConnectionObject *self)
{
    PyObject *r;
    long fd = -1;
    trk_error err;
    trk_status st;
    int entered = conn_enter(self, 1);

    if (entered != ENTER_LOCKED || self->fileno == NULL)
        return entered;
    r = PyObject_CallNoArgs(self->fileno);
    if (r != NULL) {
        fd = PyLong_AsLong(r);
        Py_DECREF(r);
    }
    if (fd == -1 && PyErr_Occurred())
        park_exception(self);
    st = trk_conn_check_fd(self->conn, fd >= 0 && fd <= INT_MAX ? (int)fd : -1, &err);
    if (st == TRK_OK)
        return entered;
    conn_finish(self, entered, st, &err, NULL);
    return ENTER_FAILED;
}

static void
conn_leave(ConnectionObject *self, int entered)
{
    ConnectionObject *peer;

    if (entered != ENTER_LOCKED)
        return;
    peer = peer_of(self);       /* the one conn_enter took: it could not go away */
    lock_release(self);
    Py_XDECREF(peer);           /* may free the peer: the lock is free by now */
}

static void
restore_exception(PyObject *exc)
{
    PyObject *tb = PyException_GetTraceback(exc);

    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, tb);
}

/*
 * After a core call: unlock, then 0 for TRK_OK or -1 with an exception set.
 * An exception parked by an event callback (on this end or, for a pair, on the
 * end the core moved forward) is re-raised; when the core call failed for a reason
 * of its own, that failure is raised with the parked exception as its __context__.
 */
static int
conn_finish(ConnectionObject *self, int entered, trk_status st, const trk_error *err,
            const char *argname)
{
    PyObject *parked = NULL, *second = NULL;

    if (entered == ENTER_LOCKED) {
        ConnectionObject *peer = peer_of(self);

        parked = self->parked;
        self->parked = NULL;
        if (peer != NULL) {
            second = peer->parked;
            peer->parked = NULL;
        }
        if (parked == NULL) {
            parked = second;
            second = NULL;
        }
    }
    conn_leave(self, entered);
    Py_XDECREF(second);        /* the first failure of the call is the one raised */

    if (parked == NULL) {
        if (st == TRK_OK)
            return 0;
        shim_raise(st, err, argname);
        return -1;
    }
    if (st == TRK_OK || st == TRK_CALLBACK || st == TRK_WANT_READ ||
        st == TRK_WANT_WRITE || st == TRK_CLOSED) {
        restore_exception(parked);
    } else {
        PyObject *type, *value, *tb;

        shim_raise(st, err, argname);
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (value != NULL)
            PyException_SetContext(value, parked);   /* steals */
        else
            Py_DECREF(parked);
        PyErr_Restore(type, value, tb);
    }
    return -1;
}

/* ------------------------------------------------------------------------- */
/* Events                                                                     */
/* ------------------------------------------------------------------------- */

static PyObject *
event_dict(ConnectionObject *self, const trk_event *ev)
{
    const char *name = ev->name ? ev->name : trk_event_name(ev->type);
    PyObject *d = NULL;

    if (name == NULL)
        name = "unknown";
    d = Py_BuildValue("{s:s,s:s,s:O}", "name", name, "role",
                      trk_role_name(trk_conn_role(self->conn)), "connection",
                      (PyObject *)self);
    if (d == NULL)
        return NULL;
    if (ev->type == TRK_EV_KEY_UPDATE_SENT || ev->type == TRK_EV_KEY_UPDATE_RECEIVED) {
        if (PyDict_SetItemString(d, "request_update",
                                 ev->request_update ? Py_True : Py_False) < 0)
            goto fail;
        if (PyDict_SetItemString(d, "automatic", ev->automatic ? Py_True : Py_False) < 0)
            goto fail;
    } else if (ev->type == TRK_EV_ALERT_SENT || ev->type == TRK_EV_ALERT_RECEIVED) {
        PyObject *alert = Py_BuildValue("{s:i,s:i,s:s}", "alert_level", ev->alert_level,
                                        "alert_description", ev->alert_description,
                                        "alert_text",
                                        ev->alert_text ? ev->alert_text : "");
        if (alert == NULL || PyDict_Update(d, alert) < 0) {
            Py_XDECREF(alert);
            goto fail;
        }
        Py_DECREF(alert);
    }
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

/* Runs inside a core call, the GIL released by that call. Nonzero makes the core
 * call return TRK_CALLBACK. */
/* Moves the raised exception into self->parked (the first one wins). GIL held. */
static void
park_exception(ConnectionObject *self)
{
    shim_park_exception(&self->parked);
}

void
shim_park_exception(PyObject **slot)
{
    if (*slot == NULL) {
        PyObject *type, *value, *tb;

        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL && value != NULL)
            PyException_SetTraceback(value, tb);
        Py_XDECREF(type);
        Py_XDECREF(tb);
        *slot = value;
    } else {
        PyErr_Clear();
    }
}

static int
event_trampoline(void *userdata, trk_conn *conn, const trk_event *ev)
{
    ConnectionObject *self = userdata;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *callback, *d, *result = NULL;
    int rc = 0;

    SHIM_UNUSED(conn);
    if (self->callback == NULL)
        goto out;
    callback = Py_NewRef(self->callback);   /* the callback may replace itself */
    d = event_dict(self, ev);
    if (d != NULL)
        result = PyObject_CallOneArg(callback, d);
    Py_XDECREF(d);
    Py_DECREF(callback);
    if (result != NULL) {
        Py_DECREF(result);
        goto out;
    }
    rc = 1;
    park_exception(self);
out:
    PyGILState_Release(gil);
    return rc;
}

/* The core's interrupt check: a signal ended a wait on the socket. Python's
 * handlers run here (Ctrl-C raises KeyboardInterrupt); an exception from one is
 * parked and stops the call, which then re-raises it. Off the main thread
 * PyErr_CheckSignals does nothing, so the wait simply goes on. */
static int
interrupt_trampoline(void *userdata)
{
    ConnectionObject *self = userdata, *outer;
    PyGILState_STATE gil = PyGILState_Ensure();
    int rc = 0;

    outer = interrupted_wait;
    interrupted_wait = self;
    if (PyErr_CheckSignals() < 0) {
        park_exception(self);
        rc = 1;
    }
    interrupted_wait = outer;
    PyGILState_Release(gil);
    return rc;
}

/*
 * A read waiting on its socket lets the connection go (trk_conn_set_wait_hook):
 * meanwhile other threads write, key-update, ask or close, as with ssl.SSLSocket.
 * The lock is let go and taken back with the GIL held, like any lock_* call. A
 * signal during the wait (or during the wait to take the lock back) makes the read
 * leave without the connection: read_abandoned tells read_entered, which runs the
 * handlers holding nothing and, when they raise nothing, reads again.
 */
static _Thread_local int read_abandoned;

static int
wait_hook(void *userdata, int phase)
{
    ConnectionObject *self = userdata;
    PyGILState_STATE gil;
    int rc = 0;

    if (phase == TRK_WAIT_ABANDON) {
        read_abandoned = 1;
        return 0;
    }
    gil = PyGILState_Ensure();
    if (phase == TRK_WAIT_RELEASE)
        lock_release(self);
    else
        rc = lock_acquire_ex(self, LEAVE_ON_SIGNAL) != 0;
    PyGILState_Release(gil);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Life and death                                                             */
/* ------------------------------------------------------------------------- */

ConnectionObject *
shim_connection_new(trk_conn *conn, PyObject *context, PyObject *fileno)
{
    ConnectionObject *self = PyObject_GC_New(ConnectionObject, &Connection_Type);

    if (self == NULL) {
        trk_conn_free(conn);
        return NULL;
    }
    self->conn = conn;
    self->owner = 0;
    self->context = Py_NewRef(context);
    self->fileno = Py_XNewRef(fileno);
    self->callback = NULL;
    self->parked = NULL;
    self->pair = NULL;
    self->weakreflist = NULL;
    trk_conn_set_interrupt_check(conn, interrupt_trampoline, self);
    trk_conn_set_wait_hook(conn, wait_hook, self);
    PyObject_GC_Track(self);
    return self;
}

int
shim_connection_join(ConnectionObject *client, ConnectionObject *server)
{
    shim_pair *pair = PyMem_Malloc(sizeof *pair);

    if (pair == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    pair->owner = 0;
    pair->end[0] = client;
    pair->end[1] = server;
    pair->refs = 2;
    client->pair = server->pair = pair;
    return 0;
}

static int
Connection_traverse(ConnectionObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->context);
    Py_VISIT(self->fileno);
    Py_VISIT(self->callback);
    Py_VISIT(self->parked);
    return 0;
}

/* The garbage collector breaks a cycle here: the TLS state is released before the
 * socket and the context it uses are let go (child before owner). */
static int
Connection_clear(ConnectionObject *self)
{
    if (self->conn != NULL) {
        lock_acquire(self);
        trk_conn_set_event_callback(self->conn, NULL, NULL);
        trk_conn_close(self->conn);
        lock_release(self);
    }
    Py_CLEAR(self->callback);
    Py_CLEAR(self->parked);
    Py_CLEAR(self->fileno);
    Py_CLEAR(self->context);
    return 0;
}

static void
Connection_dealloc(ConnectionObject *self)
{
    PyObject_GC_UnTrack(self);
    /* From here on nothing may reach self: a weakref callback's code, or a thread
     * that waited for the lock, could drive the pair's other end, whose call would
     * take a reference to its peer or raise our events on an object being freed. */
    if (self->pair != NULL)
        self->pair->end[self->pair->end[0] == self ? 0 : 1] = NULL;
    if (self->conn != NULL) {
        trk_conn_set_event_callback(self->conn, NULL, NULL);
        trk_conn_set_interrupt_check(self->conn, NULL, NULL);
    }
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    if (self->conn != NULL) {
        /* No core call is running on this end: it would hold a reference. One on
         * the other end of a pair may (a thread that waited for the lock and took
         * it after our last reference went): the lock keeps it out. */
        lock_acquire(self);
        trk_conn_free(self->conn);          /* the peer end, if any, is disconnected */
        self->conn = NULL;
        lock_release(self);
    }
    if (self->pair != NULL && --self->pair->refs == 0)
        PyMem_Free(self->pair);
    self->pair = NULL;
    Py_CLEAR(self->callback);
    Py_CLEAR(self->parked);
    Py_CLEAR(self->fileno);
    Py_CLEAR(self->context);                /* after the connection: owner last */
    PyObject_GC_Del(self);
}

/* ---- reading one value: the connection's lock, one core getter, a Python value */

typedef int (*conn_int)(const trk_conn *);
typedef size_t (*conn_size)(const trk_conn *);

/* An int getter's value as a Python object: PyBool_FromLong or PyLong_FromLong. */
static PyObject *
get_long(ConnectionObject *self, conn_int fn, PyObject *(*to_python)(long))
{
    int v, entered;

    if ((entered = conn_enter(self, 0)) == ENTER_FAILED)
        return NULL;
    v = fn(self->conn);
    conn_leave(self, entered);
    return to_python(v);
}

static PyObject *
get_flag(ConnectionObject *self, conn_int fn)
{
    return get_long(self, fn, PyBool_FromLong);
}

static PyObject *
get_int(ConnectionObject *self, conn_int fn)
{
    return get_long(self, fn, PyLong_FromLong);
}

static PyObject *
get_size(ConnectionObject *self, conn_size fn)
{
    size_t v;
    int entered;

    if ((entered = conn_enter(self, 0)) == ENTER_FAILED)
        return NULL;
    v = fn(self->conn);
    conn_leave(self, entered);
    return PyLong_FromSize_t(v);
}

/* ------------------------------------------------------------------------- */
/* Handshake and I/O                                                          */
/* ------------------------------------------------------------------------- */

/*
 * Sealing or opening one small record in memory costs less than giving up and
 * retaking the GIL; the core says when a call can do more (run a handshake, bulk
 * crypto, wait on a socket), and only those release it (bench/PROPOSALS.md, P2).
 * A small call that could only wait on its socket first goes without waiting, the
 * GIL kept: a write, since a socket nearly always takes a small record at once; a
 * read only when the socket is non-blocking anyway (a blocking read usually waits).
 * Only if the write would have waited (and the socket is not non-blocking) does it
 * run again, the GIL released: OpenSSL keeps what it took, the same data completes
 * it.
 */
static trk_status
read_io(ConnectionObject *self, void *buf, size_t cap, size_t *got, trk_error *err)
{
    trk_conn *conn = self->conn;
    int mb = trk_conn_may_block(conn, cap);
    trk_status st = TRK_WANT_READ;

    if (mb == 0)
        return trk_conn_read(conn, buf, cap, got, err);
    if (mb == TRK_MAY_BLOCK_SOCKET && trk_conn_timeout(conn) == 0)
        return trk_conn_try_read(conn, buf, cap, got, err);
    Py_BEGIN_ALLOW_THREADS
    st = trk_conn_read(conn, buf, cap, got, err);
    Py_END_ALLOW_THREADS
    return st;
}

static trk_status
write_io(ConnectionObject *self, const char *buf, size_t len, size_t *written,
         trk_error *err)
{
    trk_conn *conn = self->conn;
    int mb = trk_conn_may_block(conn, len);
    trk_status st;
    size_t more = 0;

    *written = 0;
    if (mb == 0)
        return trk_conn_write(conn, buf, len, written, err);
    if (mb == TRK_MAY_BLOCK_SOCKET) {
        st = trk_conn_try_write(conn, buf, len, written, err);
        /* a rekey policy may have split the data: the rest is a write of its own */
        if (trk_conn_timeout(conn) == 0 ||
            !((st == TRK_OK && *written < len) || st == TRK_WANT_READ ||
              st == TRK_WANT_WRITE))
            return st;
    }
    Py_BEGIN_ALLOW_THREADS
    st = trk_conn_write(conn, buf + *written, len - *written, &more, err);
    Py_END_ALLOW_THREADS
    *written += more;
    return st;
}

/* conn_enter, then read_io; again after a signal made the read leave its wait
 * without the connection (wait_hook) and Python's handlers raised nothing (the
 * read had taken nothing). Returns ENTER_FAILED with an exception set, or how the
 * connection was entered, with the read's status in *st. With `sized` (*sized NULL)
 * the bytes object read into is made here, once the connection is held, of
 * trk_conn_read_size(cap): what can arrive, not the `cap` asked. */
static int
read_entered(ConnectionObject *self, void *buf, size_t cap, size_t *got, trk_error *err,
             trk_status *st, PyObject **sized)
{
    int entered;

    for (;;) {
        if ((entered = conn_enter_io(self)) == ENTER_FAILED)
            return ENTER_FAILED;
        if (sized != NULL && *sized == NULL) {
            cap = trk_conn_read_size(self->conn, cap);
            *sized = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
            if (*sized == NULL) {
                conn_leave(self, entered);
                return ENTER_FAILED;
            }
        }
        if (sized != NULL) {
            buf = PyBytes_AS_STRING(*sized);
            cap = (size_t)PyBytes_GET_SIZE(*sized);
        }
        read_abandoned = 0;
        *st = read_io(self, buf, cap, got, err);
        if (!read_abandoned)
            return entered;
        read_abandoned = 0;
        if (entered == ENTER_LOCKED)    /* the lock is gone: only conn_enter's ref */
            Py_XDECREF(peer_of(self));
        if (PyErr_CheckSignals() < 0)
            return ENTER_FAILED;
    }
}

static PyObject *
Connection_do_handshake(ConnectionObject *self, PyObject *unused)
{
    trk_error err;
    trk_status st;
    int entered;

    SHIM_UNUSED(unused);
    if ((entered = conn_enter_io(self)) == ENTER_FAILED)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    st = trk_conn_do_handshake(self->conn, &err);
    Py_END_ALLOW_THREADS
    if (conn_finish(self, entered, st, &err, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Connection_read(ConnectionObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"n", NULL};
    Py_ssize_t cap = 16384;
    size_t got = 0;
    PyObject *buf;
    trk_error err;
    trk_status st;
    int entered;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n:read", kwlist, &cap))
        return NULL;
    if (cap < 0)
        return PyErr_Format(PyExc_ValueError, "n must not be negative, not %zd", cap);
    if (cap <= TRK_READ_CHUNK) {            /* 0 too: b"", as io and ssl give */
        buf = PyBytes_FromStringAndSize(NULL, cap);
        if (buf == NULL)
            return NULL;
        entered = read_entered(self, PyBytes_AS_STRING(buf), (size_t)cap, &got, &err, &st,
                               NULL);
    } else {
        /* read(1 << 40) sets aside what can arrive, not 1 TiB */
        buf = NULL;
        entered = read_entered(self, NULL, (size_t)cap, &got, &err, &st, &buf);
    }
    if (entered == ENTER_FAILED) {
        Py_XDECREF(buf);
        return NULL;
    }
    if (st == TRK_CLOSED) {       /* a clean close reads as b"" */
        st = TRK_OK;
        got = 0;
    }
    if (conn_finish(self, entered, st, &err, NULL) < 0) {
        Py_DECREF(buf);
        return NULL;
    }
    if ((Py_ssize_t)got != PyBytes_GET_SIZE(buf) &&
        _PyBytes_Resize(&buf, (Py_ssize_t)got) < 0)
        return NULL;
    return buf;
}

/* read_into(buffer, nbytes=None): positional calls (the hot path) take the
 * arguments straight from the vector; anything else goes through the usual parser,
 * which also words every error. */
static int
read_into_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
               Py_buffer *view, PyObject **nbytes_obj)
{
    static char *kwlist[] = {"buffer", "nbytes", NULL};
    PyObject *tuple, *kwds = NULL;
    Py_ssize_t i;
    int ok;

    if (kwnames == NULL && (nargs == 1 || nargs == 2)) {
        if (PyObject_GetBuffer(args[0], view, PyBUF_WRITABLE) == 0) {
            *nbytes_obj = nargs == 2 ? args[1] : Py_None;
            return 1;
        }
        PyErr_Clear();
    }
    tuple = PyTuple_New(nargs);
    if (tuple == NULL)
        return 0;
    for (i = 0; i < nargs; i++)
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    if (kwnames != NULL) {
        kwds = PyDict_New();
        for (i = 0; kwds != NULL && i < PyTuple_GET_SIZE(kwnames); i++)
            if (PyDict_SetItem(kwds, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0)
                Py_CLEAR(kwds);
        if (kwds == NULL) {
            Py_DECREF(tuple);
            return 0;
        }
    }
    ok = PyArg_ParseTupleAndKeywords(tuple, kwds, "w*|O:read_into", kwlist, view,
                                     nbytes_obj);
    Py_DECREF(tuple);
    Py_XDECREF(kwds);
    return ok;
}

static PyObject *
Connection_read_into(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames)
{
    Py_buffer view;
    PyObject *nbytes_obj = Py_None;
    Py_ssize_t cap;
    size_t got = 0;
    trk_error err;
    trk_status st;
    int entered;

    if (!read_into_args(args, nargs, kwnames, &view, &nbytes_obj))
        return NULL;
    cap = view.len;
    if (nbytes_obj != Py_None) {
        cap = PyNumber_AsSsize_t(nbytes_obj, PyExc_OverflowError);
        if (cap == -1 && PyErr_Occurred())
            goto fail;
        if (cap > view.len) {
            PyErr_Format(PyExc_ValueError, "nbytes (%zd) is larger than the buffer (%zd)",
                         cap, view.len);
            goto fail;
        }
    }
    if (cap < 0) {
        PyErr_Format(PyExc_ValueError, "nbytes must not be negative, not %zd", cap);
        goto fail;
    }
    if ((entered = read_entered(self, view.buf, (size_t)cap, &got, &err, &st, NULL)) ==
        ENTER_FAILED)
        goto fail;
    if (st == TRK_CLOSED) {
        st = TRK_OK;
        got = 0;
    }
    PyBuffer_Release(&view);
    if (conn_finish(self, entered, st, &err, NULL) < 0)
        return NULL;
    return PyLong_FromSize_t(got);
fail:
    PyBuffer_Release(&view);
    return NULL;
}

/* METH_O: one argument needs no tuple and no format string. */
/* Every exception from write() carries `written`: the bytes of the data that went
 * out and are not sent again (an event callback may raise after they left). 0
 * after a want or a timeout: the write is pending, the same call finishes it. An
 * exception that takes no attributes is left as it is. */
static void
note_written(size_t written)
{
    PyObject *type, *value, *tb, *n;

    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    n = PyLong_FromSize_t(written);
    if (n == NULL || value == NULL || PyObject_SetAttrString(value, "written", n) < 0)
        PyErr_Clear();
    Py_XDECREF(n);
    PyErr_Restore(type, value, tb);
}

static PyObject *
Connection_write(ConnectionObject *self, PyObject *data)
{
    Py_buffer view;
    size_t written = 0;
    trk_error err;
    trk_status st;
    int entered;

    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear(); /* the parser raises the documented error */
        if (!PyArg_Parse(data, "y*:write", &view))
            return NULL;
    }
    if ((entered = conn_enter_io(self)) == ENTER_FAILED) {
        PyBuffer_Release(&view);
        return NULL;
    }
    /* len 0 still calls the core: it sends what is owed (a key update reply). */
    st = write_io(self, view.buf, (size_t)view.len, &written, &err);
    PyBuffer_Release(&view);
    if (conn_finish(self, entered, st, &err, NULL) < 0) {
        note_written(written);
        return NULL;
    }
    return PyLong_FromSize_t(written);
}

static PyObject *
Connection_pending(ConnectionObject *self, PyObject *unused)
{
    SHIM_UNUSED(unused);
    return get_size(self, trk_conn_pending);
}

static PyObject *
Connection_shutdown(ConnectionObject *self, PyObject *unused)
{
    int complete = 0, entered;
    trk_error err;
    trk_status st;

    SHIM_UNUSED(unused);
    if ((entered = conn_enter_io(self)) == ENTER_FAILED)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    st = trk_conn_shutdown(self->conn, &complete, &err);
    Py_END_ALLOW_THREADS
    if (conn_finish(self, entered, st, &err, NULL) < 0)
        return NULL;
    return PyBool_FromLong(complete);
}

static PyObject *
Connection_close(ConnectionObject *self, PyObject *unused)
{
    int entered;

    SHIM_UNUSED(unused);
    if ((entered = conn_enter(self, 1)) == ENTER_FAILED)
        return NULL;
    trk_conn_set_event_callback(self->conn, NULL, NULL);
    trk_conn_close(self->conn);           /* idempotent */
    conn_leave(self, entered);
    /* The socket is no longer used (and never closed here: it is the caller's). */
    Py_CLEAR(self->fileno);
    Py_CLEAR(self->callback);
    Py_RETURN_NONE;
}

static PyObject *
Connection_enter(ConnectionObject *self, PyObject *unused)
{
    SHIM_UNUSED(unused);
    return Py_NewRef((PyObject *)self);
}

static PyObject *
Connection_exit(ConnectionObject *self, PyObject *args)
{
    PyObject *r;

    SHIM_UNUSED(args);
    r = Connection_close(self, NULL);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

/* ------------------------------------------------------------------------- */
/* Memory transport                                                           */
/* ------------------------------------------------------------------------- */

static PyObject *
Connection_feed(ConnectionObject *self, PyObject *args)
{
    Py_buffer view;
    trk_error err;
    trk_status st;
    int entered;

    if (!PyArg_ParseTuple(args, "y*:feed", &view))
        return NULL;
    if ((entered = conn_enter(self, 1)) == ENTER_FAILED) {
        PyBuffer_Release(&view);
        return NULL;
    }
    st = trk_conn_feed(self->conn, view.buf, (size_t)view.len, &err);
    PyBuffer_Release(&view);
    if (conn_finish(self, entered, st, &err, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Connection_feed_eof(ConnectionObject *self, PyObject *unused)
{
    trk_error err;
    trk_status st;
    int entered;

    SHIM_UNUSED(unused);
    if ((entered = conn_enter(self, 1)) == ENTER_FAILED)
        return NULL;
    st = trk_conn_feed_eof(self->conn, &err);
    if (conn_finish(self, entered, st, &err, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Connection_drain(ConnectionObject *self, PyObject *unused)
{
    PyObject *buf = NULL;
    size_t avail, got = 0;
    trk_error err;
    trk_status st;
    int entered;

    SHIM_UNUSED(unused);
    if ((entered = conn_enter(self, 1)) == ENTER_FAILED)
        return NULL;
    avail = trk_conn_outgoing(self->conn);
    buf = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)avail);
    if (buf == NULL) {
        conn_leave(self, entered);
        return NULL;
    }
    /* Called even with nothing to drain: the core checks the transport. */
    st = trk_conn_drain(self->conn, PyBytes_AS_STRING(buf), avail, &got, &err);
    if (conn_finish(self, entered, st, &err, NULL) < 0) {
        Py_DECREF(buf);
        return NULL;
    }
    if (got != avail && _PyBytes_Resize(&buf, (Py_ssize_t)got) < 0)
        return NULL;
    return buf;
}

/* ------------------------------------------------------------------------- */
/* Key update and renegotiation                                               */
/* ------------------------------------------------------------------------- */

static PyObject *
Connection_key_update(ConnectionObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"updatetype", "now", NULL};
    PyObject *type_obj = NULL;
    long type = TRK_KEY_UPDATE_NOT_REQUESTED;
    int now = 0, entered, overflow = 0;
    trk_error err;
    trk_status st;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Op:key_update", kwlist, &type_obj,
                                     &now))
        return NULL;
    if (type_obj != NULL) {
        /* bool is an int, but key_update(True) is a mistake, not REQUESTED. */
        if (PyBool_Check(type_obj) || !PyLong_Check(type_obj))
            return PyErr_Format(PyExc_TypeError,
                                "updatetype must be a KeyUpdateType or an int, not %.100s",
                                Py_TYPE(type_obj)->tp_name);
        type = PyLong_AsLongAndOverflow(type_obj, &overflow);
        if (type == -1 && PyErr_Occurred())
            return NULL;
        if (overflow || type < INT_MIN || type > INT_MAX)
            return PyErr_Format(PyExc_ValueError,
                                "updatetype: %R is not a key update type", type_obj);
    }
    if ((entered = conn_enter_io(self)) == ENTER_FAILED)
        return NULL;
    if (now) {
        Py_BEGIN_ALLOW_THREADS
        st = trk_conn_key_update(self->conn, (int)type, 1, &err);
        Py_END_ALLOW_THREADS
    } else {
        st = trk_conn_key_update(self->conn, (int)type, 0, &err);
    }
    if (conn_finish(self, entered, st, &err, "updatetype") < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Connection_get_key_update_type(ConnectionObject *self, PyObject *unused)
{
    int type, entered;

    SHIM_UNUSED(unused);
    if ((entered = conn_enter(self, 0)) == ENTER_FAILED)
        return NULL;
    type = trk_conn_get_key_update_type(self->conn);
    conn_leave(self, entered);
    return PyObject_CallFunction(shim_KeyUpdateType, "i", type);
}

typedef trk_status (*conn_action)(trk_conn *, trk_error *);

static PyObject *
run_action(ConnectionObject *self, conn_action fn)
{
    trk_error err;
    trk_status st;
    int entered;

    if ((entered = conn_enter_io(self)) == ENTER_FAILED)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    st = fn(self->conn, &err);
    Py_END_ALLOW_THREADS
    if (conn_finish(self, entered, st, &err, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Connection_renegotiate(ConnectionObject *self, PyObject *unused)
{
    SHIM_UNUSED(unused);
    return run_action(self, trk_conn_renegotiate);
}

static PyObject *
Connection_renegotiate_abbreviated(ConnectionObject *self, PyObject *unused)
{
    SHIM_UNUSED(unused);
    return run_action(self, trk_conn_renegotiate_abbreviated);
}

static PyObject *
Connection_renegotiate_pending(ConnectionObject *self, PyObject *unused)
{
    SHIM_UNUSED(unused);
    return get_flag(self, trk_conn_renegotiate_pending);
}

/* ---- DTLS ---------------------------------------------------------------- */

static PyObject *
Connection_get_timeout(ConnectionObject *self, PyObject *unused)
{
    double seconds;
    int running, entered;

    SHIM_UNUSED(unused);
    if ((entered = conn_enter(self, 0)) == ENTER_FAILED)
        return NULL;
    running = trk_conn_dtls_get_timeout(self->conn, &seconds);
    conn_leave(self, entered);
    if (!running)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(seconds);
}

static PyObject *
Connection_handle_timeout(ConnectionObject *self, PyObject *unused)
{
    SHIM_UNUSED(unused);
    return run_action(self, trk_conn_dtls_handle_timeout);
}

static PyObject *
Connection_set_mtu(ConnectionObject *self, PyObject *arg)
{
    long mtu;
    int entered, overflow = 0;
    trk_error err;
    trk_status st;

    if (PyBool_Check(arg) || !PyLong_Check(arg))
        return PyErr_Format(PyExc_TypeError, "mtu must be an int, not %.100s",
                            Py_TYPE(arg)->tp_name);
    mtu = PyLong_AsLongAndOverflow(arg, &overflow);
    if (mtu == -1 && PyErr_Occurred())
        return NULL;
    if (overflow)
        return PyErr_Format(PyExc_ValueError, "mtu: %R is out of range", arg);
    if ((entered = conn_enter(self, 1)) == ENTER_FAILED)
        return NULL;
    st = trk_conn_set_mtu(self->conn, mtu, &err);
    if (conn_finish(self, entered, st, &err, NULL) < 0) /* the core names set_mtu */
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Connection_set_verify_client(ConnectionObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"required", "verify", NULL};
    int required = 1, verify = 1, entered;
    trk_error err;
    trk_status st;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pp:set_verify_client", kwlist,
                                     &required, &verify))
        return NULL;
    if ((entered = conn_enter(self, 1)) == ENTER_FAILED)
        return NULL;
    st = trk_conn_set_verify_client(self->conn, required, verify, &err);
    if (conn_finish(self, entered, st, &err, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------- */
/* Introspection and settings                                                 */
/* ------------------------------------------------------------------------- */

static PyObject *
Connection_set_rekey_policy(ConnectionObject *self, PyObject *args, PyObject *kwds)
{
    trk_rekey_policy policy;
    trk_error err;
    trk_status st;
    int entered;

    if (shim_parse_policy(args, kwds, "set_rekey_policy", &policy) < 0)
        return NULL;
    if ((entered = conn_enter(self, 1)) == ENTER_FAILED)
        return NULL;
    st = trk_conn_set_rekey_policy(self->conn, &policy, &err);
    if (conn_finish(self, entered, st, &err, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Connection_get_rekey_policy(ConnectionObject *self, PyObject *unused)
{
    trk_rekey_policy policy;
    int entered;

    SHIM_UNUSED(unused);
    if ((entered = conn_enter(self, 0)) == ENTER_FAILED)
        return NULL;
    trk_conn_get_rekey_policy(self->conn, &policy);
    if (conn_finish(self, entered, TRK_OK, NULL, NULL) < 0)
        return NULL;
    return shim_policy_dict(&policy);
}

static PyObject *
Connection_export_keying_material(ConnectionObject *self, PyObject *args,
                                  PyObject *kwds)
{
    static char *kwlist[] = {"label", "length", "context", NULL};
    const char *label;
    Py_ssize_t length;
    PyObject *context = Py_None, *out;
    Py_buffer view = {0};
    trk_error err;
    trk_status st;
    int entered;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sn|O:export_keying_material", kwlist,
                                     &label, &length, &context))
        return NULL;
    if (length <= 0)
        return PyErr_Format(PyExc_ValueError, "length must be positive, not %zd",
                            length);
    if (context != Py_None && PyObject_GetBuffer(context, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    out = PyBytes_FromStringAndSize(NULL, length);
    if (out == NULL)
        goto done;
    if ((entered = conn_enter(self, 0)) == ENTER_FAILED) {
        Py_CLEAR(out);
        goto done;
    }
    st = trk_conn_export_keying_material(
        self->conn, (unsigned char *)PyBytes_AS_STRING(out), (size_t)length, label,
        context != Py_None ? view.buf : NULL, context != Py_None ? (size_t)view.len : 0,
        &err);
    if (conn_finish(self, entered, st, &err, NULL) < 0)
        Py_CLEAR(out);
done:
    if (context != Py_None)
        PyBuffer_Release(&view);
    return out;
}

static PyObject *
Connection_fileno(ConnectionObject *self, PyObject *unused)
{
    SHIM_UNUSED(unused);
    return get_int(self, trk_conn_fd);
}

static PyObject *
Connection_settimeout(ConnectionObject *self, PyObject *arg)
{
    double timeout;
    trk_error err;
    trk_status st;
    int entered;

    if (!shim_timeout_converter(arg, &timeout))
        return NULL;
    if ((entered = conn_enter(self, 0)) == ENTER_FAILED)
        return NULL;
    st = trk_conn_set_timeout(self->conn, timeout, &err);
    if (conn_finish(self, entered, st, &err, "timeout") < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Connection_gettimeout(ConnectionObject *self, PyObject *unused)
{
    double timeout;
    int entered;

    SHIM_UNUSED(unused);
    if ((entered = conn_enter(self, 0)) == ENTER_FAILED)
        return NULL;
    timeout = trk_conn_timeout(self->conn);
    conn_leave(self, entered);
    if (timeout < 0)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(timeout);
}

static PyObject *
Connection_set_event_callback(ConnectionObject *self, PyObject *fn)
{
    PyObject *old;
    int entered;

    if (fn != Py_None && !PyCallable_Check(fn))
        return PyErr_Format(PyExc_TypeError, "the event callback must be callable or "
                            "None, not %.100s", Py_TYPE(fn)->tp_name);
    if ((entered = conn_enter(self, 0)) == ENTER_FAILED)
        return NULL;
    old = self->callback;
    if (fn == Py_None) {
        self->callback = NULL;
        trk_conn_set_event_callback(self->conn, NULL, NULL);
    } else {
        self->callback = Py_NewRef(fn);
        trk_conn_set_event_callback(self->conn, event_trampoline, self);
    }
    conn_leave(self, entered);
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

/* ---- properties ------------------------------------------------------------ */

typedef const char *(*conn_text)(const trk_conn *);

static PyObject *
get_text(ConnectionObject *self, conn_text fn)
{
    const char *s;
    PyObject *r;
    int entered;

    if ((entered = conn_enter(self, 0)) == ENTER_FAILED)
        return NULL;
    s = fn(self->conn);
    r = s ? PyUnicode_FromString(s) : Py_NewRef(Py_None);
    conn_leave(self, entered);
    return r;
}

static const char *
conn_role_text(const trk_conn *conn)
{
    return trk_role_name(trk_conn_role(conn));
}

#define TEXT_GETTER(name, fn)                                                 \
    static PyObject *Connection_get_##name(ConnectionObject *self, void *c)   \
    {                                                                         \
        SHIM_UNUSED(c);                                                       \
        return get_text(self, fn);                                            \
    }
#define FLAG_GETTER(name, fn)                                                 \
    static PyObject *Connection_get_##name(ConnectionObject *self, void *c)   \
    {                                                                         \
        SHIM_UNUSED(c);                                                       \
        return get_flag(self, fn);                                            \
    }

TEXT_GETTER(role, conn_role_text)
TEXT_GETTER(version, trk_conn_version)
TEXT_GETTER(cipher, trk_conn_cipher)
TEXT_GETTER(group, trk_conn_group)
TEXT_GETTER(state, trk_conn_state)
FLAG_GETTER(session_reused, trk_conn_session_reused)
FLAG_GETTER(secure_renegotiation, trk_conn_secure_renegotiation)
FLAG_GETTER(is_dtls, trk_conn_is_dtls)

static PyObject *
Connection_get_alpn(ConnectionObject *self, void *c)
{
    const unsigned char *proto = NULL;
    size_t len = 0;
    PyObject *r;
    int entered;

    SHIM_UNUSED(c);
    if ((entered = conn_enter(self, 0)) == ENTER_FAILED)
        return NULL;
    trk_conn_alpn(self->conn, &proto, &len);
    r = (proto != NULL && len > 0)
            ? PyUnicode_DecodeUTF8((const char *)proto, (Py_ssize_t)len,
                                   "surrogateescape")
            : Py_NewRef(Py_None);
    conn_leave(self, entered);
    return r;
}

static PyObject *
Connection_get_data_mtu(ConnectionObject *self, void *c)
{
    SHIM_UNUSED(c);
    return get_size(self, trk_conn_dtls_data_mtu);
}

static PyObject *
Connection_get_outgoing(ConnectionObject *self, void *c)
{
    SHIM_UNUSED(c);
    return get_size(self, trk_conn_outgoing);
}

static PyObject *
Connection_get_context(ConnectionObject *self, void *c)
{
    SHIM_UNUSED(c);
    return Py_NewRef(self->context ? self->context : Py_None);
}

static PyObject *
Connection_get_stats(ConnectionObject *self, void *c)
{
    trk_stats stats;
    const trk_stat_field *f;
    PyObject *d;
    int entered;

    SHIM_UNUSED(c);
    if ((entered = conn_enter(self, 0)) == ENTER_FAILED)
        return NULL;
    trk_conn_stats(self->conn, &stats);
    conn_leave(self, entered);
    d = PyDict_New();
    if (d == NULL)
        return NULL;
    /* The names live in the core's table, so Python and Lua agree. */
    for (f = trk_stat_fields; f->name != NULL; f++) {
        uint64_t v;
        PyObject *n;

        memcpy(&v, (const char *)&stats + f->offset, sizeof v);
        n = PyLong_FromUnsignedLongLong((unsigned long long)v);
        if (n == NULL || PyDict_SetItemString(d, f->name, n) < 0) {
            Py_XDECREF(n);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(n);
    }
    return d;
}

/* "DNS:a, IP Address:127.0.0.1" -> (("DNS", "a"), ("IP Address", "127.0.0.1")),
 * the shape of ssl.SSLSocket.getpeercert()["subjectAltName"]. */
static PyObject *
san_tuple(const char *san)
{
    PyObject *list = PyList_New(0), *t;
    const char *p = san;

    if (list == NULL)
        return NULL;
    while (*p != '\0') {
        const char *end = strstr(p, ", "), *colon;
        size_t len = end ? (size_t)(end - p) : strlen(p);
        PyObject *item;

        colon = memchr(p, ':', len);
        if (colon != NULL)
            item = Py_BuildValue("(s#s#)", p, (Py_ssize_t)(colon - p), colon + 1,
                                 (Py_ssize_t)(len - (size_t)(colon - p) - 1));
        else
            item = Py_BuildValue("(ss#)", "", p, (Py_ssize_t)len);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
        p += len;
        if (end != NULL)
            p += 2;
    }
    t = PyList_AsTuple(list);
    Py_DECREF(list);
    return t;
}

static PyObject *
Connection_get_peer_certificate(ConnectionObject *self, void *c)
{
    trk_cert_info info;
    unsigned char *der = NULL;
    size_t der_len = 0;
    PyObject *san, *r;
    trk_error err;
    trk_status st;
    int entered;

    SHIM_UNUSED(c);
    memset(&info, 0, sizeof info);
    if ((entered = conn_enter(self, 0)) == ENTER_FAILED)
        return NULL;
    st = trk_conn_peer_certificate(self->conn, &info, &der, &der_len, &err);
    if (conn_finish(self, entered, st, &err, NULL) < 0) {
        trk_free(der);
        return NULL;
    }
    if (der == NULL)
        Py_RETURN_NONE;
    san = san_tuple(info.san);
    if (san == NULL) {
        trk_free(der);
        return NULL;
    }
    r = Py_BuildValue("{s:s,s:s,s:s,s:s,s:s,s:N,s:y#}", "subject", info.subject,
                      "issuer", info.issuer, "serial", info.serial, "not_before",
                      info.not_before, "not_after", info.not_after, "san", san, "der",
                      (const char *)der, (Py_ssize_t)der_len);
    trk_free(der);
    return r;
}

static PyObject *
Connection_repr(ConnectionObject *self)
{
    char text[400];
    const char *version, *cipher, *state, *ku;
    size_t used;
    int entered, pending;

    if ((entered = conn_enter(self, 0)) == ENTER_FAILED)
        return NULL;
    version = trk_conn_version(self->conn);
    cipher = trk_conn_cipher(self->conn);
    state = trk_conn_state(self->conn);
    ku = trk_key_update_type_name(trk_conn_get_key_update_type(self->conn));
    pending = trk_conn_renegotiate_pending(self->conn);
    PyOS_snprintf(text, sizeof text, "<tlsrekey.Connection %s",
                  trk_role_name(trk_conn_role(self->conn)));
    used = strlen(text);
    if (version != NULL)
        used += (size_t)PyOS_snprintf(text + used, sizeof text - used, " %s", version);
    if (cipher != NULL && used < sizeof text)
        used += (size_t)PyOS_snprintf(text + used, sizeof text - used, " %s", cipher);
    if (used < sizeof text)
        used += (size_t)PyOS_snprintf(text + used, sizeof text - used, " %s",
                                      state ? state : "?");
    if (ku != NULL && trk_conn_get_key_update_type(self->conn) != TRK_KEY_UPDATE_NONE &&
        used < sizeof text)
        used += (size_t)PyOS_snprintf(text + used, sizeof text - used, " key_update=%s",
                                      ku);
    if (pending && used < sizeof text)
        used += (size_t)PyOS_snprintf(text + used, sizeof text - used,
                                      " renegotiate_pending");
    conn_leave(self, entered);
    if (used < sizeof text)
        PyOS_snprintf(text + used, sizeof text - used, ">");
    return PyUnicode_FromString(text);
}

/* ------------------------------------------------------------------------- */
/* The type                                                                   */
/* ------------------------------------------------------------------------- */

static PyMethodDef Connection_methods[] = {
    {"do_handshake", (PyCFunction)Connection_do_handshake, METH_NOARGS,
     "do_handshake() -> None\n\n"
     "Run the handshake to completion (non-blocking and memory transports: until\n"
     "WantReadError/WantWriteError). Once established, it sends a scheduled key\n"
     "update at once (TLS 1.3) or performs a scheduled renegotiation (TLS 1.2). It\n"
     "does not send the reply owed to a peer's key update request: write(b\"\")\n"
     "does."},
    {"read", SHIM_METH(Connection_read), METH_VARARGS | METH_KEYWORDS,
     "read(n=16384) -> bytes\n\n"
     "Read up to n bytes of application data; b\"\" once the peer has closed the\n"
     "connection cleanly (close_notify). Completes the handshake first. Data that\n"
     "has already arrived is returned even when a KeyUpdate or a session ticket\n"
     "came first; a read may also send (a key update reply, renegotiation\n"
     "messages). A large n costs nothing: the buffer is the size of what can\n"
     "arrive (a record, or the data already waiting), not of n. read(0) is b\"\"\n"
     "at once."},
    {"read_into", SHIM_METH(Connection_read_into), METH_FASTCALL | METH_KEYWORDS,
     "read_into(buffer, nbytes=None) -> int\n\n"
     "Read up to nbytes (default: len(buffer)) into a writable buffer; returns the\n"
     "count, 0 once the peer has closed the connection cleanly. An empty buffer\n"
     "or nbytes=0 reads nothing and returns 0 at once."},
    {"write", (PyCFunction)Connection_write, METH_O,
     "write(data) -> int\n\n"
     "Write all of data (any bytes-like object); returns the number of bytes\n"
     "written, memoryview(data).nbytes (len(data) for bytes). write(b\"\")\n"
     "really calls OpenSSL: it sends whatever protocol message is owed, such as\n"
     "the reply to a peer's key update request. Non-blocking and memory\n"
     "transports: after WantWriteError/WantReadError call again with the same\n"
     "data."},
    {"pending", (PyCFunction)Connection_pending, METH_NOARGS,
     "pending() -> int\n\nBytes read() returns without waiting on the transport: decrypted\n"
     "data, and on sockets 1 when a whole record has arrived undecrypted (sockets\n"
     "are read ahead). 0: nothing that has arrived waits here; poll the socket."},
    {"shutdown", (PyCFunction)Connection_shutdown, METH_NOARGS,
     "shutdown() -> bool\n\n"
     "Send close_notify (once). Returns True when the peer's close_notify has also\n"
     "been received; call again to wait for it (blocking transports wait up to the\n"
     "timeout, others may raise WantReadError). The socket stays open."},
    {"close", (PyCFunction)Connection_close, METH_NOARGS,
     "close() -> None\n\n"
     "Free the TLS state without sending close_notify (call shutdown() first for\n"
     "that). Closes the socket only if connect() opened it; a socket given to\n"
     "wrap() is left open. Idempotent; any other use afterwards raises\n"
     "StateError."},
    {"__enter__", (PyCFunction)Connection_enter, METH_NOARGS,
     "Return the connection itself."},
    {"__exit__", (PyCFunction)Connection_exit, METH_VARARGS,
     "close() the connection."},
    {"feed", (PyCFunction)Connection_feed, METH_VARARGS,
     "feed(data) -> None\n\nMemory transport: append bytes received from the peer.\n"
     "DTLS: data is one whole datagram (a broken one is silently discarded)."},
    {"feed_eof", (PyCFunction)Connection_feed_eof, METH_NOARGS,
     "feed_eof() -> None\n\n"
     "Memory transport: the peer's stream ended. Later reads see EOF (without\n"
     "close_notify: SyscallError unless the context ignores unexpected EOF)."},
    {"drain", (PyCFunction)Connection_drain, METH_NOARGS,
     "drain() -> bytes\n\n"
     "Memory transport: take every byte waiting to be sent to the peer. Drain after\n"
     "every call: reads and handshakes produce output too. DTLS: one datagram per\n"
     "call (b\"\" when none is waiting), so drain until b\"\"."},
    {"key_update", SHIM_METH(Connection_key_update), METH_VARARGS | METH_KEYWORDS,
     "key_update(updatetype=KEY_UPDATE_NOT_REQUESTED, now=False) -> None\n\n"
     "Schedule a TLS 1.3 key update (SSL_key_update). NOT_REQUESTED updates our\n"
     "sending keys and tells the peer; REQUESTED also asks the peer to update its\n"
     "own. The update goes out with the next read/write/do_handshake; with now=True\n"
     "this call performs do_handshake() so it is on the wire when it returns.\n"
     "Meanwhile get_key_update_type() returns the scheduled type.\n\n"
     "ValueError: updatetype is NONE or not a key update type (TypeError for bool\n"
     "and non-ints). StateError: before the handshake, not TLS 1.3, an update is\n"
     "already scheduled, or a write is pending after WantWriteError; none of these\n"
     "harm the connection."},
    {"get_key_update_type", (PyCFunction)Connection_get_key_update_type, METH_NOARGS,
     "get_key_update_type() -> KeyUpdateType\n\n"
     "The scheduled key update, or KeyUpdateType.NONE. After the peer asked us to\n"
     "update (REQUESTED), this reports the reply we owe (NOT_REQUESTED) until our\n"
     "next write sends it: an update our own code never asked for."},
    {"renegotiate", (PyCFunction)Connection_renegotiate, METH_NOARGS,
     "renegotiate() -> None\n\n"
     "TLS 1.2: schedule a renegotiation, performed at the next I/O. Client: a full\n"
     "new handshake, no session resumption. Server: a HelloRequest; the client\n"
     "answers inside its ordinary reads and writes. StateError on TLS 1.3, before\n"
     "the handshake, or when the context has no_renegotiation."},
    {"renegotiate_abbreviated", (PyCFunction)Connection_renegotiate_abbreviated,
     METH_NOARGS,
     "renegotiate_abbreviated() -> None\n\n"
     "Like renegotiate(), but a client's new handshake resumes the session. On a\n"
     "server it is the same as renegotiate()."},
    {"renegotiate_pending", (PyCFunction)Connection_renegotiate_pending, METH_NOARGS,
     "renegotiate_pending() -> bool\n\n"
     "True while a renegotiation (or a request for one) is scheduled or under way."},
    {"get_timeout", (PyCFunction)Connection_get_timeout, METH_NOARGS,
     "get_timeout() -> float | None\n\n"
     "DTLS: seconds until the retransmission timer fires (0.0 once it has), None\n"
     "when no timer runs (nothing in flight, or TLS). Non-blocking and memory users\n"
     "wait at most that long, then call handle_timeout(); blocking calls run the\n"
     "timer themselves. Not gettimeout(), the socket's timeout."},
    {"handle_timeout", (PyCFunction)Connection_handle_timeout, METH_NOARGS,
     "handle_timeout() -> None\n\n"
     "DTLS: retransmit the last flight if the timer expired, else do nothing; drain\n"
     "afterwards on memory transports. TimeoutError after too many retransmissions\n"
     "(fatal); StateError on TLS or a closed connection."},
    {"set_mtu", (PyCFunction)Connection_set_mtu, METH_O,
     "set_mtu(mtu) -> None\n\n"
     "DTLS: the link MTU (the largest IP packet, e.g. 1500; at least 256) instead of\n"
     "the socket's path MTU: handshake messages are fragmented to fit. ValueError\n"
     "below the minimum, StateError on TLS."},
    {"set_verify_client", SHIM_METH(Connection_set_verify_client),
     METH_VARARGS | METH_KEYWORDS,
     "set_verify_client(required=True, verify=True) -> None\n\n"
     "Server: ask for a client certificate in this connection's next handshake (a\n"
     "renegotiation), insisting on one when required; verify it against the\n"
     "context's CAs when verify. Other connections of the context are untouched."},
    {"set_rekey_policy", SHIM_METH(Connection_set_rekey_policy),
     METH_VARARGS | METH_KEYWORDS,
     "set_rekey_policy(*, bytes=None, records=None, seconds=None, request_peer=False,\n"
     "                 use_renegotiation=False, aead_limit=True, read_bytes=None,\n"
     "                 min_interval=None) -> None\n\n"
     "Rekey automatically: before the write that would send more than `bytes`\n"
     "application bytes or `records` records under one sending key, or at the first\n"
     "write `seconds` after the key last changed, the core sends a KeyUpdate\n"
     "(request_peer: asking the peer to update too); a write is split so no record\n"
     "crosses a threshold. None leaves a threshold out (no limit); one given must be\n"
     "positive (0 is a ValueError), counts whole (an int, or a float such as 1e9).\n"
     "aead_limit keeps the RFC 8446\n"
     "5.5 limits on AES-GCM/CCM. On TLS 1.2 thresholds raise StateError unless\n"
     "use_renegotiation=True (the core then renegotiates). read_bytes: after that\n"
     "many bytes received under one key of the peer's, a read asks the peer to\n"
     "update (a KeyUpdate requesting one; TLS 1.2: a renegotiation). min_interval:\n"
     "no automatic rekey sooner than this many seconds after the last (the\n"
     "thresholds wait; the AEAD limit does not). Replaces the policy inherited\n"
     "from the context."},
    {"get_rekey_policy", (PyCFunction)Connection_get_rekey_policy, METH_NOARGS,
     "get_rekey_policy() -> dict\n\n"
     "The connection's rekey policy, keyed like set_rekey_policy()'s arguments."},
    {"export_keying_material", SHIM_METH(Connection_export_keying_material),
     METH_VARARGS | METH_KEYWORDS,
     "export_keying_material(label, length, context=None) -> bytes\n\n"
     "RFC 5705 / RFC 8446 7.5 exporter. The tls-exporter channel binding (RFC\n"
     "9266) is export_keying_material(\"EXPORTER-Channel-Binding\", 32)."},
    {"fileno", (PyCFunction)Connection_fileno, METH_NOARGS,
     "fileno() -> int\n\nThe socket's file descriptor; -1 for memory transports, "
     "pairs and after close()."},
    {"settimeout", (PyCFunction)Connection_settimeout, METH_O,
     "settimeout(timeout) -> None\n\n"
     "Socket transports: None blocks, a number of seconds bounds each call\n"
     "(TimeoutError), 0 is non-blocking (WantReadError/WantWriteError). The\n"
     "connection's own mode: the socket stays as its owner set it."},
    {"gettimeout", (PyCFunction)Connection_gettimeout, METH_NOARGS,
     "gettimeout() -> float | None\n\nThe timeout settimeout() describes."},
    {"set_event_callback", (PyCFunction)Connection_set_event_callback, METH_O,
     "set_event_callback(fn) -> None\n\n"
     "Call fn(event) for each KeyUpdate, HelloRequest, handshake and alert, sent or\n"
     "received, from inside the call that saw it, after the counters moved. event\n"
     "is a dict: name (\"key_update_received\", ...), role, connection, and\n"
     "request_update and automatic (key updates; automatic: sent by the rekey\n"
     "policy) or alert_level, alert_description, alert_text\n"
     "(alerts). An exception fn raises is re-raised by that call. fn may read the\n"
     "connection but not drive it (StateError). None removes the callback."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef Connection_getset[] = {
    {"role", (getter)Connection_get_role, NULL, "\"client\" or \"server\".", NULL},
    {"version", (getter)Connection_get_version, NULL,
     "The negotiated protocol (\"TLSv1.3\"), None before the handshake.", NULL},
    {"cipher", (getter)Connection_get_cipher, NULL,
     "OpenSSL's name of the negotiated cipher, None before the handshake.", NULL},
    {"group", (getter)Connection_get_group, NULL,
     "The key exchange group (\"x25519\", \"secp256r1\"), None before the handshake\n"
     "or without one. A resumption reports the group of the original handshake.", NULL},
    {"alpn", (getter)Connection_get_alpn, NULL,
     "The negotiated ALPN protocol, or None.", NULL},
    {"session_reused", (getter)Connection_get_session_reused, NULL,
     "Whether the last handshake resumed a session.", NULL},
    {"secure_renegotiation", (getter)Connection_get_secure_renegotiation, NULL,
     "Whether the peer supports secure renegotiation (RFC 5746).", NULL},
    {"peer_certificate", (getter)Connection_get_peer_certificate, NULL,
     "The peer's certificate as a dict (subject, issuer, serial, not_before,\n"
     "not_after, san as ((type, value), ...), der), or None if it sent none.", NULL},
    {"state", (getter)Connection_get_state, NULL,
     "\"new\", \"handshaking\", \"established\", \"renegotiating\", \"closed\",\n"
     "\"failed\" or \"released\" (after close()).", NULL},
    {"stats", (getter)Connection_get_stats, NULL,
     "Counters from OpenSSL's message callback, as a dict: key_updates_sent,\n"
     "key_updates_received, key_update_requests_sent/received, renegotiations\n"
     "(completed renegotiation handshakes on this side, whoever started them),\n"
     "hello_requests_sent/received, handshakes, alerts_sent/received,\n"
     "bytes_written/read, records_written/read.", NULL},
    {"context", (getter)Connection_get_context, NULL,
     "The Context this connection was made from.", NULL},
    {"outgoing", (getter)Connection_get_outgoing, NULL,
     "Memory transport: bytes waiting to be drained (DTLS: of every waiting\n"
     "datagram).", NULL},
    {"is_dtls", (getter)Connection_get_is_dtls, NULL,
     "Whether this is a DTLS 1.2 connection: one write() is one datagram (at most\n"
     "16384 bytes; write(b\"\") sends nothing), a read() returns data of one datagram\n"
     "only, lost data stays lost (UDP), handshake flights are resent on a timer.\n"
     "key_update() raises StateError (no DTLS 1.3 in OpenSSL 3.0); renegotiation\n"
     "works, and a client answering a server's request never resumes.", NULL},
    {"data_mtu", (getter)Connection_get_data_mtu, NULL,
     "DTLS: the largest write() whose record fits one packet of the MTU; 0 before\n"
     "a cipher is agreed, and on TLS.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

PyTypeObject Connection_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tlsrekey.Connection",
    .tp_basicsize = sizeof(ConnectionObject),
    .tp_dealloc = (destructor)Connection_dealloc,
    .tp_repr = (reprfunc)Connection_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A TLS connection (an OpenSSL SSL object) with key update and\n"
              "renegotiation. Made by Context.connect(), Context.wrap(),\n"
              "Context.memory() or tlsrekey.pair(); not constructed directly.\n\n"
              "One connection may be used from several threads: calls are serialised\n"
              "(both ends of a pair together), and the GIL is released while OpenSSL\n"
              "works. A read waiting on its socket lets the connection go meanwhile:\n"
              "another thread may write, key-update, ask or close (a close ends the\n"
              "read with StateError). A with-block closes it.",
    .tp_traverse = (traverseproc)Connection_traverse,
    .tp_clear = (inquiry)Connection_clear,
    .tp_weaklistoffset = offsetof(ConnectionObject, weakreflist),
    .tp_methods = Connection_methods,
    .tp_getset = Connection_getset,
};
