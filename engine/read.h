/* The compiled capture reader's shared helpers (read.c: the record walks, decode.c: the
 * bulk decode). The reader is the C twin of tcplife/capture/fastwalk.py's numpy record
 * walk and fastdecode.py's bulk decode: it takes the same buffer (fastbuffer.Stream's
 * numpy store), hands back the same columns (int64, through bytearrays Python wraps with
 * np.frombuffer) and leaves every frame, block and record it does not take to the Python
 * code around it, which walks and decodes those one by one as the plain reader does. */
#ifndef TCPLIFE_READ_H
#define TCPLIFE_READ_H

#include "engine.h"

#include <string.h>

/* records.py's limits */
#define TL_MAX_BLOCK_LEN (1 << 26)
#define TL_NS_PER_S 1000000000LL

/* Loads from a byte buffer at any alignment (memcpy: no unaligned pointer casts). */
static inline uint16_t tl_be16(const uint8_t *p) {
    return (uint16_t)((unsigned)p[0] << 8 | (unsigned)p[1]);
}

static inline uint32_t tl_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint32_t tl_le32(const uint8_t *p) {
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | (uint32_t)p[0];
}

static inline uint32_t tl_u32(const uint8_t *p, int big) {
    return big ? tl_be32(p) : tl_le32(p);
}

static inline uint16_t tl_u16(const uint8_t *p, int big) {
    return big ? tl_be16(p) : (uint16_t)((unsigned)p[1] << 8 | (unsigned)p[0]);
}

/* A read-only, C-contiguous buffer of bytes (any object with the buffer protocol). */
int tl_get_bytes(PyObject *obj, Py_buffer *view, const char *what);

/* A read-only, C-contiguous buffer of int64 values; *count gets their number. */
int tl_get_int64(PyObject *obj, Py_buffer *view, Py_ssize_t *count, const char *what);

#endif
