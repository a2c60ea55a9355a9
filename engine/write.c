/* The writer stage: rows of a table formatted from its columns, as JSON lines, JSON or
 * CSV, without a Python object per row (`tcplife._engine.format_rows`).
 *
 * A column comes as a tuple (name, spec, buffers...), spec as in tcplife.output.schema:
 *   int8 int16 int32 int64 Int64 bool time  (values[, null])  any integer buffer; a row
 *                          equal to `null` is null ("time": ns since the epoch)
 *   float64                (values)                  doubles; NaN is null
 *   string, cat:NAME       (codes, blob, offsets)    codes into a table of texts: text k
 *                          is blob[offsets[k]:offsets[k+1]] (UTF-8); code -1 is null
 *   object (lists)         (rows, values)            row r: values[rows[r]:rows[r+1]],
 *                          integers; or (rows, codes, blob, offsets): texts
 * Buffers are anything with the buffer protocol (numpy arrays, array.array, bytes),
 * one-dimensional and contiguous. The Python implementation is the specification:
 * tcplife.output.formats (see write.h); tcplife/output/cwrite.py builds the tuples. */
#include "write.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { K_INT, K_BOOL, K_TIME, K_FLOAT, K_STR, K_LIST_INT, K_LIST_STR };
enum { T_I8, T_I16, T_I32, T_I64, T_U8, T_U16, T_U32, T_F64 };
enum { F_JSONL, F_JSON, F_CSV };

/* one buffer of a column */
typedef struct {
    Py_buffer view;
    int held;  /* view is to be released */
    int type;  /* T_* */
    Py_ssize_t count;
} wbuf;

/* the texts of a string column (or of a list column's elements) */
typedef struct {
    wbuf codes, blob, offsets;
} wtexts;

typedef struct {
    PyObject *name;  /* bytes: the name in UTF-8 */
    int kind;        /* K_* */
    wbuf values;     /* numbers, or the elements of a list column of integers */
    wbuf rows;       /* a list column: offsets of its rows */
    wtexts texts;    /* a string column, or a list column of texts */
    int has_null;
    int64_t null;
    Py_ssize_t time_block;  /* the block time_ns was decided for (-1: none yet) */
    int time_ns;     /* any value in that block has nanoseconds: nine fraction digits */
} wcol;

typedef struct {
    wcol *cols;
    Py_ssize_t ncols, nrows, block;
} wtable;

static int native_little(void) {
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* The element type of a buffer from its struct format and item size; -1 if not one. */
static int buffer_type(const Py_buffer *v) {
    const char *f = v->format ? v->format : "B";
    if (*f == '@' || *f == '=' || (*f == '<' && native_little()) ||
            ((*f == '>' || *f == '!') && !native_little()))
        f++;
    if (f[0] == '\0' || f[1] != '\0') return -1;
    switch (f[0]) {
    case 'b': case 'h': case 'i': case 'l': case 'q': case 'n':
        return v->itemsize == 1 ? T_I8 : v->itemsize == 2 ? T_I16 :
               v->itemsize == 4 ? T_I32 : v->itemsize == 8 ? T_I64 : -1;
    case 'B': case 'H': case 'I': case 'L': case 'Q': case 'N': case '?': case 'c':
        return v->itemsize == 1 ? T_U8 : v->itemsize == 2 ? T_U16 :
               v->itemsize == 4 ? T_U32 : -1;
    case 'd':
        return v->itemsize == 8 ? T_F64 : -1;
    default:
        return -1;
    }
}

static int get_buffer(wbuf *b, PyObject *obj, const char *what, PyObject *name) {
    if (PyObject_GetBuffer(obj, &b->view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Format(PyExc_TypeError, "column %R: %s is not a contiguous buffer", name,
                     what);
        return -1;
    }
    b->held = 1;
    b->type = buffer_type(&b->view);
    if (b->view.ndim > 1 || b->type < 0) {
        PyErr_Format(PyExc_TypeError, "column %R: %s has format %s x %zd bytes; give a "
                     "one-dimensional buffer of integers or doubles", name, what,
                     b->view.format ? b->view.format : "B", b->view.itemsize);
        return -1;
    }
    b->count = b->view.len / b->view.itemsize;
    return 0;
}

static void release(wbuf *b) {
    if (b->held) PyBuffer_Release(&b->view);
    b->held = 0;
}

static inline int64_t get_int(const wbuf *b, Py_ssize_t i) {
    const char *p = (const char *)b->view.buf + i * b->view.itemsize;
    switch (b->type) {
    case T_I8: { int8_t v; memcpy(&v, p, 1); return v; }
    case T_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case T_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case T_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    case T_U8: { uint8_t v; memcpy(&v, p, 1); return v; }
    case T_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case T_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    default: return 0;
    }
}

static inline double get_double(const wbuf *b, Py_ssize_t i) {
    double v;
    memcpy(&v, (const char *)b->view.buf + i * 8, 8);
    return v;
}

static void table_free(wtable *t) {
    if (t->cols == NULL) return;
    for (Py_ssize_t i = 0; i < t->ncols; i++) {
        wcol *c = &t->cols[i];
        Py_XDECREF(c->name);
        release(&c->values);
        release(&c->rows);
        release(&c->texts.codes);
        release(&c->texts.blob);
        release(&c->texts.offsets);
    }
    PyMem_Free(t->cols);
    t->cols = NULL;
}

static int need_int(const wbuf *b, PyObject *name, const char *what) {
    if (b->type == T_F64) {
        PyErr_Format(PyExc_TypeError, "column %R: %s must hold integers", name, what);
        return -1;
    }
    return 0;
}

static int get_texts(wtexts *t, PyObject *const *items, PyObject *name) {
    if (get_buffer(&t->codes, items[0], "codes", name) < 0 ||
            need_int(&t->codes, name, "codes") < 0 ||
            get_buffer(&t->blob, items[1], "blob", name) < 0 ||
            get_buffer(&t->offsets, items[2], "offsets", name) < 0 ||
            need_int(&t->offsets, name, "offsets") < 0)
        return -1;
    if (t->blob.view.itemsize != 1) {
        PyErr_Format(PyExc_TypeError, "column %R: blob must be bytes", name);
        return -1;
    }
    if (t->offsets.count < 1) {
        PyErr_Format(PyExc_ValueError, "column %R: offsets needs one more entry than "
                     "there are texts", name);
        return -1;
    }
    return 0;
}

/* One column's tuple -> c; its row count in *rows. */
static int parse_column(wcol *c, PyObject *desc, Py_ssize_t *rows) {
    PyObject *seq = PySequence_Fast(desc, "a column is a tuple (name, spec, buffers...)");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    int rc = -1;
    if (n < 3 || !PyUnicode_Check(items[0]) || !PyUnicode_Check(items[1])) {
        PyErr_SetString(PyExc_TypeError, "a column is a tuple (name, spec, buffers...)");
        goto done;
    }
    PyObject *name = items[0];
    c->name = PyUnicode_AsEncodedString(name, "utf-8", "surrogatepass");
    if (c->name == NULL) goto done;
    const char *spec = PyUnicode_AsUTF8(items[1]);
    if (spec == NULL) goto done;
    Py_ssize_t extra = n - 2;
    c->time_block = -1;
    if (!strcmp(spec, "int8") || !strcmp(spec, "int16") || !strcmp(spec, "int32") ||
            !strcmp(spec, "int64") || !strcmp(spec, "Int64") || !strcmp(spec, "bool") ||
            !strcmp(spec, "time")) {
        c->kind = !strcmp(spec, "bool") ? K_BOOL : !strcmp(spec, "time") ? K_TIME : K_INT;
        if (extra > 2) goto arity;
        if (get_buffer(&c->values, items[2], "values", name) < 0 ||
                need_int(&c->values, name, "values") < 0)
            goto done;
        if (extra == 2) {
            c->has_null = 1;
            c->null = PyLong_AsLongLong(items[3]);
            if (c->null == -1 && PyErr_Occurred()) goto done;
        }
        *rows = c->values.count;
    } else if (!strcmp(spec, "float64")) {
        c->kind = K_FLOAT;
        if (extra != 1) goto arity;
        if (get_buffer(&c->values, items[2], "values", name) < 0) goto done;
        if (c->values.type != T_F64) {
            PyErr_Format(PyExc_TypeError, "column %R: values must be doubles", name);
            goto done;
        }
        *rows = c->values.count;
    } else if (!strcmp(spec, "string") || !strncmp(spec, "cat:", 4)) {
        c->kind = K_STR;
        if (extra != 3) goto arity;
        if (get_texts(&c->texts, items + 2, name) < 0) goto done;
        *rows = c->texts.codes.count;
    } else if (!strcmp(spec, "object")) {
        if (extra != 2 && extra != 4) goto arity;
        c->kind = extra == 2 ? K_LIST_INT : K_LIST_STR;
        if (get_buffer(&c->rows, items[2], "rows", name) < 0 ||
                need_int(&c->rows, name, "rows") < 0)
            goto done;
        if (c->kind == K_LIST_INT) {
            if (get_buffer(&c->values, items[3], "values", name) < 0 ||
                    need_int(&c->values, name, "values") < 0)
                goto done;
        } else if (get_texts(&c->texts, items + 3, name) < 0) {
            goto done;
        }
        if (c->rows.count < 1) {
            PyErr_Format(PyExc_ValueError, "column %R: rows needs one more entry than "
                         "there are rows", name);
            goto done;
        }
        *rows = c->rows.count - 1;
    } else {
        PyErr_Format(PyExc_ValueError, "column %R: unknown spec %R", name, items[1]);
        goto done;
    }
    rc = 0;
    goto done;
arity:
    PyErr_Format(PyExc_TypeError, "column %R: wrong number of buffers (%zd) for spec %R",
                 items[0], extra, items[1]);
done:
    Py_DECREF(seq);
    return rc;
}

static int parse_table(wtable *t, PyObject *columns) {
    PyObject *seq = PySequence_Fast(columns, "columns must be a sequence of tuples");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    t->cols = PyMem_Calloc(n ? (size_t)n : 1, sizeof(wcol));
    if (t->cols == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    t->ncols = n;
    t->nrows = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t rows = 0;
        if (parse_column(&t->cols[i], PySequence_Fast_GET_ITEM(seq, i), &rows) < 0) {
            Py_DECREF(seq);
            return -1;
        }
        if (i == 0) {
            t->nrows = rows;
        } else if (rows != t->nrows) {
            PyErr_Format(PyExc_ValueError, "column %zd has %zd rows, column 0 has %zd",
                         i, rows, t->nrows);
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

/* text k of a table of texts: *s, *n; -1 (ValueError) when out of range */
static int text_at(const wtexts *t, int64_t k, const char **s, size_t *n) {
    if (k < 0 || k >= t->offsets.count - 1) {
        PyErr_Format(PyExc_ValueError, "text code %lld is outside the table of %zd",
                     (long long)k, t->offsets.count - 1);
        return -1;
    }
    int64_t a = get_int(&t->offsets, (Py_ssize_t)k);
    int64_t b = get_int(&t->offsets, (Py_ssize_t)k + 1);
    if (a < 0 || b < a || b > t->blob.count) {
        PyErr_Format(PyExc_ValueError, "text %lld: offsets %lld..%lld outside the blob of "
                     "%zd bytes", (long long)k, (long long)a, (long long)b,
                     t->blob.count);
        return -1;
    }
    *s = (const char *)t->blob.view.buf + a;
    *n = (size_t)(b - a);
    return 0;
}

/* the elements of list row r: [*a, *b) of its values or codes */
static int list_at(const wcol *c, Py_ssize_t r, Py_ssize_t *a, Py_ssize_t *b) {
    const wbuf *elems = c->kind == K_LIST_INT ? &c->values : &c->texts.codes;
    int64_t x = get_int(&c->rows, r), y = get_int(&c->rows, r + 1);
    if (x < 0 || y < x || y > elems->count) {
        PyErr_Format(PyExc_ValueError, "list row %zd: offsets %lld..%lld outside the %zd "
                     "elements", r, (long long)x, (long long)y, elems->count);
        return -1;
    }
    *a = (Py_ssize_t)x;
    *b = (Py_ssize_t)y;
    return 0;
}

/* Is row r of a time column written with nanoseconds? iso_ns decides per block of rows
 * (formats.iter_records converts `block` rows at a time): any value not a whole
 * microsecond. */
static int time_ns(wtable *t, wcol *c, Py_ssize_t r) {
    Py_ssize_t block = r / t->block;
    if (block != c->time_block) {
        Py_ssize_t a = block * t->block;
        Py_ssize_t b = t->nrows - a < t->block ? t->nrows : a + t->block;
        c->time_ns = 0;
        for (Py_ssize_t i = a; i < b; i++) {
            int64_t v = get_int(&c->values, i);
            if (v % 1000 && !(c->has_null && v == c->null)) {
                c->time_ns = 1;
                break;
            }
        }
        c->time_block = block;
    }
    return c->time_ns;
}

#define PUT(s) do { if (tlw_put(b, s, sizeof(s) - 1) < 0) return -1; } while (0)

static int put_int(tlw_buf *b, int64_t v) {
    if (tlw_reserve(b, 24) < 0) return -1;
    b->len += tlw_int(b->p + b->len, v);
    return 0;
}

/* One JSON value; 1 when the row cannot be written (an infinite float: ValueError set),
 * -1 on other errors. */
static int json_value(tlw_buf *b, wtable *t, wcol *c, Py_ssize_t r) {
    switch (c->kind) {
    case K_INT: case K_BOOL: case K_TIME: {
        int64_t v = get_int(&c->values, r);
        if (c->has_null && v == c->null) { PUT("null"); return 0; }
        if (c->kind == K_INT) return put_int(b, v);
        if (c->kind == K_BOOL) {
            if (v) PUT("true");
            else PUT("false");
            return 0;
        }
        if (tlw_reserve(b, 48) < 0) return -1;
        b->p[b->len++] = '"';
        b->len += tlw_iso(b->p + b->len, v, time_ns(t, c, r));
        b->p[b->len++] = '"';
        return 0;
    }
    case K_FLOAT: {
        double v = get_double(&c->values, r);
        if (isnan(v)) { PUT("null"); return 0; }
        if (isinf(v)) {
            PyErr_SetString(PyExc_ValueError,
                            "Out of range float values are not JSON compliant");
            return 1;
        }
        return tlw_float(b, v);
    }
    case K_STR: {
        int64_t k = get_int(&c->texts.codes, r);
        const char *s;
        size_t n;
        if (k == -1) { PUT("null"); return 0; }
        if (text_at(&c->texts, k, &s, &n) < 0) return -1;
        return tlw_json_str(b, s, n);
    }
    default: {  /* lists */
        Py_ssize_t a, z;
        if (list_at(c, r, &a, &z) < 0) return -1;
        PUT("[");
        for (Py_ssize_t i = a; i < z; i++) {
            if (i > a) PUT(", ");
            if (c->kind == K_LIST_INT) {
                if (put_int(b, get_int(&c->values, i)) < 0) return -1;
            } else {
                const char *s;
                size_t n;
                if (text_at(&c->texts, get_int(&c->texts.codes, i), &s, &n) < 0 ||
                        tlw_json_str(b, s, n) < 0)
                    return -1;
            }
        }
        PUT("]");
        return 0;
    }
    }
}

/* One CSV cell (formats._csv_cell, then safety.csv_text, then csv.writer); `scratch`
 * holds a list's joined text. */
static int csv_value(tlw_buf *b, tlw_buf *scratch, wtable *t, wcol *c, Py_ssize_t r) {
    switch (c->kind) {
    case K_INT: case K_BOOL: case K_TIME: {
        int64_t v = get_int(&c->values, r);
        if (c->has_null && v == c->null) return 0;
        if (c->kind == K_INT) return put_int(b, v);
        if (c->kind == K_BOOL) {
            if (v) PUT("true");
            else PUT("false");
            return 0;
        }
        /* digits first: neither a formula nor a character that needs quotes */
        if (tlw_reserve(b, 48) < 0) return -1;
        b->len += tlw_iso(b->p + b->len, v, time_ns(t, c, r));
        return 0;
    }
    case K_FLOAT: {
        double v = get_double(&c->values, r);
        if (isnan(v)) return 0;
        return tlw_float(b, v);  /* a number: no formula guard ("-1.5", "inf") */
    }
    case K_STR: {
        int64_t k = get_int(&c->texts.codes, r);
        const char *s;
        size_t n;
        if (k == -1) return 0;
        if (text_at(&c->texts, k, &s, &n) < 0) return -1;
        return tlw_csv_text(b, s, n, 1);
    }
    default: {  /* lists: the elements' str joined by ";", then a text cell */
        Py_ssize_t a, z;
        if (list_at(c, r, &a, &z) < 0) return -1;
        scratch->len = 0;
        for (Py_ssize_t i = a; i < z; i++) {
            if (i > a && tlw_put(scratch, ";", 1) < 0) return -1;
            if (c->kind == K_LIST_INT) {
                if (put_int(scratch, get_int(&c->values, i)) < 0) return -1;
            } else {
                const char *s;
                size_t n;
                if (text_at(&c->texts, get_int(&c->texts.codes, i), &s, &n) < 0 ||
                        tlw_put(scratch, s, n) < 0)
                    return -1;
            }
        }
        return tlw_csv_text(b, scratch->p, scratch->len, 1);
    }
    }
}

/* The keys of a JSON row: `{"name": ` for the first column, `, "name": ` after. */
static int json_keys(tlw_buf *keys, size_t *ends, const wtable *t) {
    for (Py_ssize_t j = 0; j < t->ncols; j++) {
        PyObject *name = t->cols[j].name;
        if (tlw_put(keys, j ? ", " : "{", j ? 2 : 1) < 0 ||
                tlw_json_str(keys, PyBytes_AS_STRING(name),
                             (size_t)PyBytes_GET_SIZE(name)) < 0 ||
                tlw_put(keys, ": ", 2) < 0)
            return -1;
        ends[j] = keys->len;
    }
    return 0;
}

static int csv_header(tlw_buf *b, const wtable *t) {
    size_t mark = b->len;
    for (Py_ssize_t j = 0; j < t->ncols; j++) {
        PyObject *name = t->cols[j].name;
        if ((j && tlw_put(b, ",", 1) < 0) ||
                tlw_csv_text(b, PyBytes_AS_STRING(name), (size_t)PyBytes_GET_SIZE(name),
                             0) < 0)
            return -1;
    }
    /* csv.writer quotes a row that is one empty field, so that it reads back */
    if (b->len == mark && t->ncols == 1 && tlw_put(b, "\"\"", 2) < 0) return -1;
    return tlw_put(b, "\n", 1);
}

/* Rows [start, stop) into b; the number written, which is short of stop - start when a
 * row cannot be written (its error is set and b ends before it), or -1. */
static Py_ssize_t format_rows(tlw_buf *b, wtable *t, int fmt, Py_ssize_t start,
                              Py_ssize_t stop, Py_ssize_t base) {
    tlw_buf keys = {NULL, 0, 0}, scratch = {NULL, 0, 0};
    size_t *ends = NULL;
    Py_ssize_t r = start, result = -1;
    if (fmt != F_CSV) {
        ends = PyMem_Malloc(sizeof(size_t) * (size_t)(t->ncols ? t->ncols : 1));
        if (ends == NULL) { PyErr_NoMemory(); goto done; }
        if (json_keys(&keys, ends, t) < 0) goto done;
    }
    for (; r < stop; r++) {
        size_t mark = b->len;
        if (fmt == F_CSV) {
            for (Py_ssize_t j = 0; j < t->ncols; j++) {
                if ((j && tlw_put(b, ",", 1) < 0) ||
                        csv_value(b, &scratch, t, &t->cols[j], r) < 0)
                    goto done;
            }
            if (b->len == mark && t->ncols == 1 && tlw_put(b, "\"\"", 2) < 0) goto done;
            if (tlw_put(b, "\n", 1) < 0) goto done;
            continue;
        }
        if (fmt == F_JSON && tlw_put(b, base + r ? ",\n  " : "\n  ",
                                     base + r ? 4 : 3) < 0)
            goto done;
        if (t->ncols == 0 && tlw_put(b, "{", 1) < 0) goto done;
        for (Py_ssize_t j = 0; j < t->ncols; j++) {
            size_t from = j ? ends[j - 1] : 0;
            if (tlw_put(b, keys.p + from, ends[j] - from) < 0) goto done;
            int rc = json_value(b, t, &t->cols[j], r);
            if (rc < 0) goto done;
            if (rc > 0) {  /* this row cannot be written: stop before it */
                b->len = mark;
                if (r == start) goto done;
                PyErr_Clear();
                result = r - start;
                goto done;
            }
        }
        if (tlw_put(b, fmt == F_JSONL ? "}\n" : "}", fmt == F_JSONL ? 2 : 1) < 0)
            goto done;
    }
    result = stop - start;
done:
    free(keys.p);
    free(scratch.p);
    PyMem_Free(ends);
    return result;
}

PyObject *tl_format_rows(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"fmt", "columns", "start", "stop", "block", "base", "header",
                             NULL};
    const char *fmt_name;
    PyObject *columns;
    Py_ssize_t start, stop, block = 10000, base = 0;
    int header = 0;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sOnn|$nnp", kwlist, &fmt_name,
                                     &columns, &start, &stop, &block, &base, &header))
        return NULL;
    int fmt = !strcmp(fmt_name, "jsonl") ? F_JSONL : !strcmp(fmt_name, "json") ? F_JSON :
              !strcmp(fmt_name, "csv") ? F_CSV : -1;
    if (fmt < 0) {
        PyErr_Format(PyExc_ValueError, "unknown format '%s': jsonl, json or csv",
                     fmt_name);
        return NULL;
    }
    if (block < 1 || base < 0) {
        PyErr_SetString(PyExc_ValueError, "block must be positive and base not negative");
        return NULL;
    }
    wtable t = {NULL, 0, 0, block};
    tlw_buf b = {NULL, 0, 0};
    PyObject *out = NULL;
    if (parse_table(&t, columns) < 0) goto done;
    if (base > PY_SSIZE_T_MAX - t.nrows) {
        PyErr_SetString(PyExc_ValueError, "base too large");
        goto done;
    }
    if (start < 0 || stop < start || stop > t.nrows) {
        PyErr_Format(PyExc_IndexError, "rows %zd..%zd of a table of %zd", start, stop,
                     t.nrows);
        goto done;
    }
    if (header && fmt == F_CSV && csv_header(&b, &t) < 0) goto done;
    Py_ssize_t done_rows = format_rows(&b, &t, fmt, start, stop, base);
    if (done_rows < 0) goto done;
    out = Py_BuildValue("(y#n)", b.p ? b.p : "", (Py_ssize_t)b.len, done_rows);
done:
    table_free(&t);
    free(b.p);
    return out;
}
