/*
 * lomond.protocol._speedups: the masking XOR of RFC 6455 section 5.3 in C.
 *
 * Optional: setup.py builds it when it can, and lomond.mask falls back to pure
 * Python when it is missing or LOMOND_NO_EXTENSIONS=1. Two functions (mask, and
 * prefixed_mask for whole frames), no module state, no dependencies beyond the
 * CPython API (3.8 to 3.13).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* Below this many bytes the XOR takes less time than handing the GIL over. */
#define RELEASE_GIL_FROM 16384

/*
 * dst[i] = src[i] ^ key[i % 4] for i in [0, length).
 *
 * Eight bytes at a time with the key repeated twice in a 64-bit word: loads and
 * stores go through memcpy, which compilers turn into single unaligned moves, so
 * any alignment of src (a memoryview slice can start at an odd address) is safe.
 * Every step is a multiple of 4 bytes, so the tail starts at key[0].
 */
static void
xor_with_key(const unsigned char *src, unsigned char *dst, Py_ssize_t length,
             const unsigned char key[4])
{
    unsigned char pattern[8];
    uint64_t key64, word;
    Py_ssize_t index = 0;

    memcpy(pattern, key, 4);
    memcpy(pattern + 4, key, 4);
    memcpy(&key64, pattern, 8); /* byte order of the machine, as the loads */

    for (; index + 32 <= length; index += 32) {
        uint64_t a, b, c, d;
        memcpy(&a, src + index, 8);
        memcpy(&b, src + index + 8, 8);
        memcpy(&c, src + index + 16, 8);
        memcpy(&d, src + index + 24, 8);
        a ^= key64;
        b ^= key64;
        c ^= key64;
        d ^= key64;
        memcpy(dst + index, &a, 8);
        memcpy(dst + index + 8, &b, 8);
        memcpy(dst + index + 16, &c, 8);
        memcpy(dst + index + 24, &d, 8);
    }
    for (; index + 8 <= length; index += 8) {
        memcpy(&word, src + index, 8);
        word ^= key64;
        memcpy(dst + index, &word, 8);
    }
    for (; index < length; index++) {
        dst[index] = src[index] ^ key[index & 3];
    }
}

/* Read a 4-byte masking key from any bytes-like object; 0 on success. */
static int
read_key(PyObject *object, unsigned char key_bytes[4])
{
    Py_buffer key;

    /* PyBUF_FULL_RO accepts every exporter, strided and multi-byte formats
     * included; view.len is the size in bytes either way. */
    if (PyObject_GetBuffer(object, &key, PyBUF_FULL_RO) < 0) {
        return -1;
    }
    if (key.len != 4) {
        PyErr_Format(PyExc_ValueError,
                     "masking key must be 4 bytes, not %zd", key.len);
        PyBuffer_Release(&key);
        return -1;
    }
    if (PyBuffer_ToContiguous(key_bytes, &key, 4, 'C') < 0) {
        PyBuffer_Release(&key);
        return -1;
    }
    PyBuffer_Release(&key);
    return 0;
}

/*
 * Return bytes: the prefix (if any) followed by data XORed with the key, built in
 * one allocation so that a frame's header and masked payload are never copied
 * again to be joined.
 */
static PyObject *
masked(PyObject *prefix_object, PyObject *key_object, PyObject *data_object)
{
    Py_buffer prefix = {0}, data;
    unsigned char key_bytes[4];
    PyObject *result = NULL;
    unsigned char *out;

    if (read_key(key_object, key_bytes) < 0) {
        return NULL;
    }
    if (prefix_object != NULL
        && PyObject_GetBuffer(prefix_object, &prefix, PyBUF_FULL_RO) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(data_object, &data, PyBUF_FULL_RO) < 0) {
        goto done;
    }
    if (data.len > PY_SSIZE_T_MAX - prefix.len) {
        PyErr_NoMemory();
        goto release;
    }
    result = PyBytes_FromStringAndSize(NULL, prefix.len + data.len);
    if (result == NULL) {
        goto release;
    }
    out = (unsigned char *)PyBytes_AS_STRING(result);
    if (prefix.len && PyBuffer_ToContiguous(out, &prefix, prefix.len, 'C') < 0) {
        Py_CLEAR(result);
        goto release;
    }
    out += prefix.len;
    if (!PyBuffer_IsContiguous(&data, 'C')) {
        /* Rare (a strided memoryview): gather the bytes first, then XOR in place. */
        if (PyBuffer_ToContiguous(out, &data, data.len, 'C') < 0) {
            Py_CLEAR(result);
            goto release;
        }
        xor_with_key(out, out, data.len, key_bytes);
    }
    else if (data.len >= RELEASE_GIL_FROM) {
        /* The buffer export keeps the data's memory alive and its size fixed. */
        Py_BEGIN_ALLOW_THREADS
        xor_with_key((const unsigned char *)data.buf, out, data.len, key_bytes);
        Py_END_ALLOW_THREADS
    }
    else {
        xor_with_key((const unsigned char *)data.buf, out, data.len, key_bytes);
    }
release:
    PyBuffer_Release(&data);
done:
    if (prefix_object != NULL) {
        PyBuffer_Release(&prefix);
    }
    return result;
}

PyDoc_STRVAR(mask_doc,
"mask(key, data, /)\n"
"--\n"
"\n"
"XOR ``data`` with the repeating 4-byte ``key`` (RFC 6455 section 5.3); return bytes.\n"
"\n"
"``data`` is any bytes-like object. Raises TypeError if ``key`` or ``data`` is\n"
"not bytes-like, ValueError if ``key`` is not 4 bytes long.");

static PyObject *
speedups_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "mask() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    return masked(NULL, args[0], args[1]);
}

PyDoc_STRVAR(prefixed_mask_doc,
"prefixed_mask(prefix, key, data, /)\n"
"--\n"
"\n"
"Return ``prefix + mask(key, data)``, built in one allocation.\n"
"\n"
"``prefix`` and ``data`` are any bytes-like objects. Raises as ``mask`` does.");

static PyObject *
speedups_prefixed_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "prefixed_mask() takes exactly 3 arguments (%zd given)", nargs);
        return NULL;
    }
    return masked(args[0], args[1], args[2]);
}

static PyMethodDef speedups_methods[] = {
    {"mask", (PyCFunction)(void (*)(void))speedups_mask, METH_FASTCALL, mask_doc},
    {"prefixed_mask", (PyCFunction)(void (*)(void))speedups_prefixed_mask, METH_FASTCALL,
     prefixed_mask_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot speedups_slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "lomond.protocol._speedups",
    "C implementation of the masking XOR (RFC 6455 section 5.3); see lomond.mask.",
    0,
    speedups_methods,
    speedups_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
