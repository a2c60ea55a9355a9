/* One value as text, as Python writes it: integers (str), the ISO times of tcplife.output.formats.iso_ns,
 * JSON strings (json.dumps, ensure_ascii=False) and CSV cells (csv.writer with
 * QUOTE_MINIMAL after tcplife.output.safety.csv_text). Floats: write_float.c. */
#include "write.h"

#include <stdlib.h>
#include <string.h>

int tlw_grow(tlw_buf *b, size_t more) {
    if (more > (size_t)PY_SSIZE_T_MAX - b->len) {
        PyErr_NoMemory();
        return -1;
    }
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap - b->len < more) {
        if (cap > (size_t)PY_SSIZE_T_MAX / 2) { cap = b->len + more; break; }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static const char PAIRS[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

size_t tlw_int(char *out, int64_t v) {
    char tmp[24];
    char *end = tmp + sizeof tmp, *p = end;
    /* the magnitude as unsigned: -INT64_MIN does not fit an int64 */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    while (u >= 100) {
        unsigned k = (unsigned)(u % 100) * 2;
        u /= 100;
        p -= 2;
        p[0] = PAIRS[k];
        p[1] = PAIRS[k + 1];
    }
    if (u >= 10) {
        p -= 2;
        p[0] = PAIRS[u * 2];
        p[1] = PAIRS[u * 2 + 1];
    } else {
        *--p = (char)('0' + u);
    }
    if (v < 0) *--p = '-';
    size_t len = (size_t)(end - p);
    memcpy(out, p, len);
    return len;
}

static char *two(char *p, int v) {
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

size_t tlw_iso(char *out, int64_t ns, int ns_digits) {
    /* divmod(ns, 10**9) and divmod(sec, 86400), floored as Python's */
    int64_t sec = ns / 1000000000, frac = ns % 1000000000;
    if (frac < 0) { frac += 1000000000; sec -= 1; }
    int64_t days = sec / 86400, sod = sec % 86400;
    if (sod < 0) { sod += 86400; days -= 1; }
    /* days since 1970-01-01 -> the proleptic Gregorian date (H. Hinnant's algorithm) */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int day = (int)(doy - (153 * mp + 2) / 5 + 1);
    int month = (int)(mp < 10 ? mp + 3 : mp - 9);
    int64_t year = yoe + era * 400 + (month <= 2);
    /* int64 ns reach years 1677 to 2262 only: always four digits */
    char *p = out;
    p = two(p, (int)(year / 100));
    p = two(p, (int)(year % 100));
    *p++ = '-';
    p = two(p, month);
    *p++ = '-';
    p = two(p, day);
    *p++ = 'T';
    p = two(p, (int)(sod / 3600));
    *p++ = ':';
    p = two(p, (int)(sod / 60 % 60));
    *p++ = ':';
    p = two(p, (int)(sod % 60));
    *p++ = '.';
    int digits = ns_digits ? 9 : 6;
    int64_t f = ns_digits ? frac : frac / 1000;
    for (int i = digits - 1; i >= 0; i--) {
        p[i] = (char)('0' + f % 10);
        f /= 10;
    }
    p += digits;
    *p++ = 'Z';
    return (size_t)(p - out);
}

/* byte -> its JSON escape letter ('u' for \u00XX), or 0: written as it is */
static const char JSON_ESCAPE[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    0, 0, '"', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\\', 0, 0, 0,
};

static const char HEX[] = "0123456789abcdef";

int tlw_json_str(tlw_buf *b, const char *s, size_t n) {
    if (n > ((size_t)PY_SSIZE_T_MAX - 2) / 6) {
        PyErr_NoMemory();
        return -1;
    }
    if (tlw_reserve(b, n * 6 + 2) < 0) return -1;
    char *p = b->p + b->len;
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e = JSON_ESCAPE[c];
        if (!e) {
            *p++ = (char)c;
        } else if (e == 'u') {
            memcpy(p, "\\u00", 4);
            p[4] = HEX[c >> 4];
            p[5] = HEX[c & 15];
            p += 6;
        } else {
            p[0] = '\\';
            p[1] = e;
            p += 2;
        }
    }
    *p++ = '"';
    b->len = (size_t)(p - b->p);
    return 0;
}

int tlw_csv_text(tlw_buf *b, const char *s, size_t n, int guard) {
    int formula = guard && n > 0 && (s[0] == '=' || s[0] == '+' || s[0] == '-' ||
                                     s[0] == '@' || s[0] == '\t' || s[0] == '\r');
    size_t quotes = 0;
    int quoted = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '"') { quotes++; quoted = 1; }
        else if (c == ',' || c == '\n') quoted = 1;
    }
    if (n > (size_t)PY_SSIZE_T_MAX / 2 - 4) {
        PyErr_NoMemory();
        return -1;
    }
    if (tlw_reserve(b, n + quotes + 3) < 0) return -1;
    char *p = b->p + b->len;
    if (quoted) *p++ = '"';
    if (formula) *p++ = '\'';
    if (quotes) {
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '"') *p++ = '"';
            *p++ = s[i];
        }
    } else if (n) {
        memcpy(p, s, n);
        p += n;
    }
    if (quoted) *p++ = '"';
    b->len = (size_t)(p - b->p);
    return 0;
}
