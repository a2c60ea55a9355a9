/* The detectors' texts: a growable buffer, the sentences' helpers as Python writes them
 * (`clock`, `secs`, f"{n:,}", f"{x:,.1f}", f"{x:.0%}"), int true division rounded as
 * Python rounds it, and interned texts (addresses). See detect.h. */
#define TL_DETECT_INTERNAL
#include "detect.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ buffer */
void tl_buf_free(tl_buf *b) {
    free(b->s);
    b->s = NULL;
    b->n = b->cap = 0;
}

void tl_buf_add(tl_buf *b, const char *s, size_t n) {
    if (b->failed || n == 0) return;
    if (n > SIZE_MAX / 2 - b->n) {
        b->failed = 1;
        return;
    }
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        char *s2 = realloc(b->s, cap);
        if (s2 == NULL) {
            b->failed = 1;
            return;
        }
        b->s = s2;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
}

void tl_buf_str(tl_buf *b, const char *s) { tl_buf_add(b, s, strlen(s)); }

void tl_buf_text(tl_buf *b, tl_text t) {
    if (t.s != NULL) tl_buf_add(b, t.s, t.n);
}

void tl_buf_int(tl_buf *b, int64_t v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    if (n > 0) tl_buf_add(b, tmp, (size_t)n);
}

/* digits (an optional '-', digits, perhaps a fraction) with ',' every three digits of the
 * integer part, as Python's ',' format option */
static void add_grouped(tl_buf *b, const char *digits, size_t n) {
    size_t i = 0;
    if (n > 0 && digits[0] == '-') {
        tl_buf_add(b, "-", 1);
        i = 1;
    }
    size_t end = i;
    while (end < n && digits[end] >= '0' && digits[end] <= '9') end++;
    size_t len = end - i;
    for (size_t k = 0; k < len; k++) {
        if (k > 0 && (len - k) % 3 == 0) tl_buf_add(b, ",", 1);
        tl_buf_add(b, digits + i + k, 1);
    }
    tl_buf_add(b, digits + end, n - end);
}

void tl_buf_commas(tl_buf *b, int64_t v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    if (n > 0) add_grouped(b, tmp, (size_t)n);
}

void tl_buf_fixed_commas(tl_buf *b, double x, int digits) {
    char tmp[512]; /* a double's integer part has at most 309 digits */
    int n = snprintf(tmp, sizeof tmp, "%.*f", digits, x);
    if (n > 0 && (size_t)n < sizeof tmp) add_grouped(b, tmp, (size_t)n);
    else b->failed = 1;
}

void tl_buf_percent0(tl_buf *b, double x) {
    char tmp[512];
    /* CPython formats '%' as 'f' of x * 100 (a float product) */
    int n = snprintf(tmp, sizeof tmp, "%.0f%%", x * 100.0);
    if (n > 0 && (size_t)n < sizeof tmp) tl_buf_add(b, tmp, (size_t)n);
    else b->failed = 1;
}

/* floor division and modulo, as Python's // and % */
static int64_t floor_div(int64_t a, int64_t d) {
    int64_t q = a / d;
    if ((a % d != 0) && ((a < 0) != (d < 0))) q--;
    return q;
}

static int64_t floor_mod(int64_t a, int64_t d) { return a - floor_div(a, d) * d; }

void tl_buf_clock(tl_buf *b, int64_t ts_ns) {
    /* datetime.fromtimestamp(ts_ns // NS, utc) as %H:%M:%S, then the milliseconds */
    int64_t sec = floor_div(ts_ns, TL_NS);
    int64_t ms = floor_mod(ts_ns, TL_NS) / 1000000;
    int64_t day = floor_mod(sec, 86400);
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%02d:%02d:%02d.%03d", (int)(day / 3600),
                     (int)(day / 60 % 60), (int)(day % 60), (int)ms);
    if (n > 0) tl_buf_add(b, tmp, (size_t)n);
}

/* ------------------------------------------------------------------ exact ratios */
/* a * b as a 128-bit value (hi, lo) */
static void mul64(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo) {
    uint64_t a0 = a & 0xFFFFFFFFu, a1 = a >> 32, b0 = b & 0xFFFFFFFFu, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xFFFFFFFFu) + (p10 & 0xFFFFFFFFu);
    *lo = (p00 & 0xFFFFFFFFu) | (mid << 32);
    *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

double tl_ratio(uint64_t a, uint64_t b, uint64_t c) {
    /* the nearest double to a*b/c (ties to even), as Python's int / int: long division,
     * one bit at a time, keeping 54 significant bits and whether anything is left */
    uint64_t hi, lo;
    if (c == 0) return 0.0;
    mul64(a, b, &hi, &lo);
    if (hi == 0 && lo == 0) return 0.0;
    if (c > ((uint64_t)1 << 63)) c = (uint64_t)1 << 63; /* (never: callers pass less) */
    uint64_t r = 0, m = 0;
    int got = 0, lsb = 0, k;
    for (k = 127; k >= 0 && got < 54; k--) {
        uint64_t bit = k >= 64 ? (hi >> (k - 64)) & 1u : (lo >> k) & 1u;
        r = (r << 1) | bit;
        unsigned q = 0;
        if (r >= c) {
            r -= c;
            q = 1;
        }
        if (got > 0 || q) {
            m = (m << 1) | q;
            got++;
            lsb = k;
        }
    }
    int sticky = r != 0;
    if (got >= 54) { /* integer bits left below k+1 */
        for (; k >= 0 && !sticky; k--)
            if ((k >= 64 ? (hi >> (k - 64)) & 1u : (lo >> k) & 1u) != 0) sticky = 1;
    } else {
        for (int j = 1; got < 54 && (r != 0 || got == 0) && j < 200; j++) {
            r <<= 1;
            unsigned q = 0;
            if (r >= c) {
                r -= c;
                q = 1;
            }
            if (got > 0 || q) {
                m = (m << 1) | q;
                got++;
                lsb = -j;
            }
        }
        sticky = r != 0;
        if (got < 54) return ldexp((double)m, lsb); /* exact */
    }
    unsigned guard = (unsigned)(m & 1u);
    m >>= 1;
    lsb++;
    if (guard && (sticky || (m & 1u))) m++;
    return ldexp((double)m, lsb);
}

void tl_buf_secs(tl_buf *b, int64_t ns) {
    uint64_t mag = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    double s = tl_ratio(mag, 1, (uint64_t)TL_NS);
    if (ns < 0) s = -s;
    char tmp[64];
    int n;
    if (s >= 10) n = snprintf(tmp, sizeof tmp, "%.0f s", s);
    else if (s >= 1) n = snprintf(tmp, sizeof tmp, "%.1f s", s);
    else n = snprintf(tmp, sizeof tmp, "%.0f ms", s * 1000);
    if (n > 0 && (size_t)n < sizeof tmp) tl_buf_add(b, tmp, (size_t)n);
}

/* ------------------------------------------------------------------ texts */
int tl_text_cmp(tl_text a, tl_text b) {
    size_t n = a.n < b.n ? a.n : b.n;
    int c = n ? memcmp(a.s, b.s, n) : 0;
    if (c != 0) return c;
    return a.n < b.n ? -1 : a.n > b.n ? 1 : 0;
}

int tl_text_eq(tl_text a, const char *s) {
    size_t n = strlen(s);
    return a.s != NULL && a.n == n && memcmp(a.s, s, n) == 0;
}

int tl_text_has(tl_text a, char c) { return a.s != NULL && a.n && memchr(a.s, c, a.n) != NULL; }

/* ------------------------------------------------------------------ interned texts */
static size_t text_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211u;
    }
    return (size_t)(h ^ (h >> 29));
}

void tl_names_free(tl_names *t) {
    for (size_t i = 0; i < t->n; i++) free(t->texts[i]);
    free(t->texts);
    free(t->lens);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

static int64_t *names_find(const tl_names *t, const char *s, size_t n) {
    size_t i = text_hash(s, n) & t->mask;
    for (;;) {
        int64_t id = t->slots[i];
        if (id < 0) return &t->slots[i];
        if (t->lens[id] == n && (n == 0 || memcmp(t->texts[id], s, n) == 0))
            return &t->slots[i];
        i = (i + 1) & t->mask;
    }
}

static int names_grow(tl_names *t) {
    size_t n = t->slots ? (t->mask + 1) * 2 : 64;
    if (n > SIZE_MAX / sizeof(int64_t)) return -1;
    int64_t *slots = malloc(n * sizeof(int64_t));
    if (slots == NULL) return -1;
    for (size_t i = 0; i < n; i++) slots[i] = -1;
    free(t->slots);
    t->slots = slots;
    t->mask = n - 1;
    for (size_t id = 0; id < t->n; id++)
        *names_find(t, t->texts[id], t->lens[id]) = (int64_t)id;
    return 0;
}

int64_t tl_names_id(tl_names *t, tl_text s) {
    const char *p = s.s ? s.s : "";
    if (t->slots == NULL || (t->n + 1) * 2 > t->mask + 1) {
        if (names_grow(t) < 0) return -1;
    }
    int64_t *slot = names_find(t, p, s.n);
    if (*slot >= 0) return *slot;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        if (cap > SIZE_MAX / sizeof(char *)) return -1;
        char **texts = realloc(t->texts, cap * sizeof(char *));
        if (texts == NULL) return -1;
        t->texts = texts;
        size_t *lens = realloc(t->lens, cap * sizeof(size_t));
        if (lens == NULL) return -1;
        t->lens = lens;
        t->cap = cap;
    }
    char *copy = malloc(s.n + 1);
    if (copy == NULL) return -1;
    if (s.n) memcpy(copy, p, s.n);
    copy[s.n] = '\0';
    t->texts[t->n] = copy;
    t->lens[t->n] = s.n;
    *slot = (int64_t)t->n;
    return (int64_t)t->n++;
}

tl_text tl_names_text(const tl_names *t, int64_t id) {
    tl_text out = {"", 0};
    if (id >= 0 && (size_t)id < t->n) {
        out.s = t->texts[id];
        out.n = t->lens[id];
    }
    return out;
}
