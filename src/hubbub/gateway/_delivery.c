/* The fan-out hot path, compiled: one encoded frame to many sessions.
 *
 * deliver(by_user, recipients, frame, direct, failed[, conversation_id, seq])
 * does what hubbub.gateway.delivery.deliver_py does, without the interpreter's
 * cost per recipient. With direct true, the frame is sent at once, with one send()
 * per idle connection; otherwise (or for a busy connection) it is queued in
 * the session's Writer, which keeps frames in order. See delivery.py for the
 * contract; the tests hold both implementations to it. handed() counts the
 * frames handed to writers so far (sent at once or queued), for the metrics.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifndef MSG_NOSIGNAL /* not on macOS and the BSDs; Python ignores SIGPIPE anyway */
#define MSG_NOSIGNAL 0
#endif

static PyObject *s_held, *s_high, *s_writer, *s_busy, *s_fd, *s_transport, *s_is_closing, *s_push,
    *s_rest;

/* Frames handed to sessions' writers (sent at once or queued), for handed(). */
static unsigned long long handed_total = 0;

/* 1 when the frame went to the kernel (whole or partly, the rest queued by
 * Writer.rest), 0 when the writer cannot take a direct send, -1 on error. */
static int
send_direct(PyObject *writer, PyObject *frame)
{
    PyObject *value = PyObject_GetAttr(writer, s_busy);
    if (value == NULL)
        return -1;
    int busy = PyObject_IsTrue(value);
    Py_DECREF(value);
    if (busy != 0)
        return busy < 0 ? -1 : 0;

    value = PyObject_GetAttr(writer, s_fd);
    if (value == NULL)
        return -1;
    long fd = PyLong_AsLong(value);
    Py_DECREF(value);
    if (fd == -1 && PyErr_Occurred())
        return -1;
    if (fd < 0)
        return 0;

    /* A transport closed by the event loop (a reset, an error) may have
     * released its descriptor before connection_lost reaches the session;
     * the number could already belong to a new connection. */
    PyObject *transport = PyObject_GetAttr(writer, s_transport);
    if (transport == NULL)
        return -1;
    value = PyObject_CallMethodNoArgs(transport, s_is_closing);
    Py_DECREF(transport);
    if (value == NULL)
        return -1;
    int closing = PyObject_IsTrue(value);
    Py_DECREF(value);
    if (closing != 0)
        return closing < 0 ? -1 : 0;

    const char *data = PyBytes_AS_STRING(frame);
    Py_ssize_t size = PyBytes_GET_SIZE(frame);
    ssize_t sent;
    do {
        sent = send((int)fd, data, (size_t)size, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent == size)
        return 1;
    /* Partly sent, would block, or failed: the transport takes the rest and
     * finds any error itself. */
    PyObject *offset = PyLong_FromSsize_t(sent < 0 ? 0 : (Py_ssize_t)sent);
    if (offset == NULL)
        return -1;
    PyObject *args[3] = {writer, frame, offset};
    value = PyObject_VectorcallMethod(s_rest, args, 3, NULL);
    Py_DECREF(offset);
    if (value == NULL)
        return -1;
    Py_DECREF(value);
    return 1;
}

/* For a stream event (seq > 0): 1 when the session's high says the frame is
 * the next one (high is moved to seq), 0 when the client already has it, 2
 * when the session must decide (it holds live events, a conversation it does
 * not know, a gap), -1 on error. */
static int
admit(PyObject *session, PyObject *conversation_id, long long seq, PyObject *seq_obj)
{
    PyObject *high = PyObject_GetAttr(session, s_high);
    if (high == NULL)
        return -1;
    if (high == Py_None) { /* holding live events */
        Py_DECREF(high);
        return 2;
    }
    if (!PyDict_Check(high)) {
        Py_DECREF(high);
        PyErr_SetString(PyExc_TypeError, "a session's high must be a dict or None");
        return -1;
    }
    int rc;
    PyObject *value = PyDict_GetItemWithError(high, conversation_id); /* borrowed */
    if (value == NULL) {
        rc = PyErr_Occurred() ? -1 : 2;
    } else {
        long long last = PyLong_AsLongLong(value);
        if (last == -1 && PyErr_Occurred())
            rc = -1;
        else if (seq <= last)
            rc = 0;
        else if (seq - 1 != last)
            rc = 2;
        else
            rc = PyDict_SetItem(high, conversation_id, seq_obj) < 0 ? -1 : 1;
    }
    Py_DECREF(high);
    return rc;
}

static int
deliver_session(PyObject *session, PyObject *frame, int direct, PyObject *held,
                PyObject *conversation_id, long long seq, PyObject *seq_obj)
{
    if (seq > 0) { /* high tells whether the session holds, too */
        int verdict = admit(session, conversation_id, seq, seq_obj);
        if (verdict == 2)
            return PyList_Append(held, session);
        if (verdict <= 0)
            return verdict;
    } else {
        PyObject *value = PyObject_GetAttr(session, s_held);
        if (value == NULL)
            return -1;
        int is_held = value != Py_None;
        Py_DECREF(value);
        if (is_held)
            return PyList_Append(held, session);
    }

    PyObject *writer = PyObject_GetAttr(session, s_writer);
    if (writer == NULL)
        return -1;
    int done = direct ? send_direct(writer, frame) : 0;
    if (done == 0) {
        PyObject *value = PyObject_CallMethodOneArg(writer, s_push, frame);
        done = value == NULL ? -1 : 1;
        Py_XDECREF(value);
    }
    Py_DECREF(writer);
    if (done < 0)
        return -1;
    handed_total++;
    return 0;
}

/* Moves the raised exception into failed as (session, exception); -1 when
 * even that fails. */
static int
record_failure(PyObject *failed, PyObject *session)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
#else
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL && exc != NULL)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
#endif
    if (exc == NULL)
        return 0;
    PyObject *pair = PyTuple_Pack(2, session, exc);
    Py_DECREF(exc);
    if (pair == NULL)
        return -1;
    int rc = PyList_Append(failed, pair);
    Py_DECREF(pair);
    return rc;
}

static PyObject *
deliver(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 && nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "deliver(by_user, recipients, frame, direct, failed[, conversation_id, seq])");
        return NULL;
    }
    PyObject *by_user = args[0], *frame = args[2], *failed = args[4];
    if (!PyDict_Check(by_user) || !PyBytes_Check(frame) || !PyList_Check(failed)) {
        PyErr_SetString(PyExc_TypeError,
                        "deliver() needs a dict, a bytes frame and a list for failures");
        return NULL;
    }
    int direct = PyObject_IsTrue(args[3]);
    if (direct < 0)
        return NULL;
    PyObject *conversation_id = NULL, *seq_obj = NULL;
    long long seq = 0;
    if (nargs == 7) {
        conversation_id = args[5];
        seq_obj = args[6];
        if (!PyUnicode_Check(conversation_id) || !PyLong_Check(seq_obj)) {
            PyErr_SetString(PyExc_TypeError, "deliver() needs a str conversation id and an int seq");
            return NULL;
        }
        seq = PyLong_AsLongLong(seq_obj);
        if (seq == -1 && PyErr_Occurred())
            return NULL;
    }
    /* A tuple (the argument itself when it is one): Python code run from
     * here cannot change its length or drop the keys read from it. */
    PyObject *recipients = PySequence_Tuple(args[1]);
    if (recipients == NULL)
        return NULL;
    PyObject *held = PyList_New(0);
    if (held == NULL) {
        Py_DECREF(recipients);
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(recipients);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *sessions = PyDict_GetItemWithError(by_user, PyTuple_GET_ITEM(recipients, i));
        if (sessions == NULL) {
            if (PyErr_Occurred())
                goto error;
            continue;
        }
        if (!PyList_Check(sessions)) {
            PyErr_SetString(PyExc_TypeError, "by_user values must be lists of sessions");
            goto error;
        }
        Py_INCREF(sessions);
        /* The size is read on every turn: Python code run from here (a
         * writer's push or rest) must not, but could, change the list. */
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(sessions); j++) {
            PyObject *session = PyList_GET_ITEM(sessions, j);
            Py_INCREF(session);
            /* One session's failure is the caller's to handle; the others
             * still get the frame. */
            int rc = deliver_session(session, frame, direct, held, conversation_id, seq, seq_obj);
            if (rc < 0 && PyErr_ExceptionMatches(PyExc_Exception))
                rc = record_failure(failed, session);
            Py_DECREF(session);
            if (rc < 0) {
                Py_DECREF(sessions);
                goto error;
            }
        }
        Py_DECREF(sessions);
    }
    Py_DECREF(recipients);
    return held;

error:
    Py_DECREF(recipients);
    Py_DECREF(held);
    return NULL;
}

static PyObject *
handed(PyObject *module, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong(handed_total);
}

static PyMethodDef methods[] = {
    {"deliver", (PyCFunction)(void (*)(void))deliver, METH_FASTCALL,
     "deliver(by_user, recipients, frame, direct, failed[, conversation_id, seq]) -> sessions "
     "that decide for themselves"},
    {"handed", handed, METH_NOARGS, "handed() -> frames handed to writers so far"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "hubbub.gateway._delivery", "Compiled fan-out.", -1, methods,
};

PyMODINIT_FUNC
PyInit__delivery(void)
{
#define INTERN(var, text)                                                                          \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                         \
        return NULL;
    INTERN(s_held, "held");
    INTERN(s_high, "high");
    INTERN(s_writer, "writer");
    INTERN(s_busy, "busy");
    INTERN(s_fd, "fd");
    INTERN(s_transport, "transport");
    INTERN(s_is_closing, "is_closing");
    INTERN(s_push, "push");
    INTERN(s_rest, "rest");
#undef INTERN
    return PyModule_Create(&module);
}
