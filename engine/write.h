/* The writer stage: tables written as JSON lines, JSON and CSV from columns, byte for byte
 * what tcplife.output.formats writes for the same rows (write_jsonl, write_json,
 * write_csv). What write.c (the columns and the rows) and write_text.c (one value as
 * text) share. The Python side is tcplife/output/cwrite.py. */
#ifndef TCPLIFE_WRITE_H
#define TCPLIFE_WRITE_H

#include "engine.h"

#include <stddef.h>
#include <string.h>

/* A growing byte buffer (malloc'd; freed by the owner with free(b->p)). */
typedef struct {
    char *p;
    size_t len, cap;
} tlw_buf;

/* Grow b to hold `more` bytes after len; 0, or -1 with MemoryError set. */
int tlw_grow(tlw_buf *b, size_t more);

/* Make room for `more` bytes after len; 0, or -1 with MemoryError set. */
static inline int tlw_reserve(tlw_buf *b, size_t more) {
    return more <= b->cap - b->len ? 0 : tlw_grow(b, more);
}

/* Append n bytes; 0 or -1 (MemoryError). */
static inline int tlw_put(tlw_buf *b, const char *s, size_t n) {
    if (tlw_reserve(b, n) < 0) return -1;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

/* The decimal text of an int64 (str(int)). Needs 21 bytes of room; returns the length. */
size_t tlw_int(char *out, int64_t v);

/* float.__repr__ of a double (which json.dumps and the csv module write): shortest
 * round-trip digits; "inf", "-inf", "nan" (write_float.c). 0 or -1 (MemoryError). */
int tlw_float(tlw_buf *b, double v);

/* formats.iso_ns of one value: "YYYY-MM-DDTHH:MM:SS.ffffffZ", or with nine fraction
 * digits when ns_digits. Needs 40 bytes of room; returns the length. Every int64 falls
 * within years 1677..2262, which Python writes the same way (four-digit years). */
size_t tlw_iso(char *out, int64_t ns, int ns_digits);

/* A JSON string (json.dumps with ensure_ascii=False) of UTF-8 bytes: quotes around, `"`
 * `\` and C0 controls escaped; other bytes as they are. 0 or -1 (MemoryError). */
int tlw_json_str(tlw_buf *b, const char *s, size_t n);

/* A CSV cell of text (csv.writer, QUOTE_MINIMAL, lineterminator "\n"), after
 * tcplife.output.safety.csv_text when `guard`: a leading `'` before text that starts
 * with = + - @ TAB CR; quoted when it holds `,` `"` or LF, quotes doubled.
 * 0 or -1 (MemoryError). */
int tlw_csv_text(tlw_buf *b, const char *s, size_t n, int guard);

#endif
