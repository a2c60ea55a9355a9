/* float.__repr__ in C: the shortest decimal that reads back as the same double (the
 * closest such when there are several; ties to even), laid out as Python lays it out.
 *
 * The digits come from Ryu (Ulf Adams, "Ryu: fast float-to-string conversion", PLDI
 * 2018; d2s.c of github.com/ulfjack/ryu, Apache 2.0 or Boost 1.0), which gives the same
 * digits as David Gay's dtoa in mode 0 (what CPython's repr calls) and is ~10x faster;
 * its tables are generated exactly from Python integers (write_ryu.h). The layout is
 * CPython's format_float_short for repr: positional when the decimal exponent of the
 * first digit is in [-5, 15], with ".0" after a whole number; else d[.ddd]e+XX (sign
 * always, at least two exponent digits). tests/test_cwrite.py compares it with repr. */
#include "write.h"
#include "write_ryu.h"

#include <string.h>

/* hi:lo = a * b */
static uint64_t umul128(uint64_t a, uint64_t b, uint64_t *hi) {
#if defined(__SIZEOF_INT128__)
    __extension__ unsigned __int128 p = (unsigned __int128)a * b;
    *hi = (uint64_t)(p >> 64);
    return (uint64_t)p;
#else
    uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (uint32_t)p10 + (uint32_t)p01;
    *hi = p11 + (p10 >> 32) + (p01 >> 32) + (mid >> 32);
    return (mid << 32) | (uint32_t)p00;
#endif
}

/* (m * mul) >> j, mul a 128-bit table entry (low, high), 64 <= j < 128 */
static uint64_t mul_shift(uint64_t m, const uint64_t *mul, int32_t j) {
    uint64_t high0, high1;
    umul128(m, mul[0], &high0);
    uint64_t low1 = umul128(m, mul[1], &high1);
    uint64_t sum = high0 + low1;
    if (sum < high0) high1++;
    int32_t dist = j - 64;  /* 0 < dist < 64 */
    return (high1 << (64 - dist)) | (sum >> dist);
}

/* ceil(log2(5^e)) for 0 < e <= 3528 (bits of 5^e; 1 for e = 0) */
static int32_t pow5bits(int32_t e) { return (int32_t)(((uint32_t)e * 1217359u) >> 19) + 1; }
/* floor(log10(2^e)), floor(log10(5^e)) for 0 <= e <= 1650, 2620 */
static uint32_t log10pow2(int32_t e) { return ((uint32_t)e * 78913u) >> 18; }
static uint32_t log10pow5(int32_t e) { return ((uint32_t)e * 732923u) >> 20; }

static uint32_t pow5_factor(uint64_t v) {
    uint32_t count = 0;
    while (v % 5 == 0) {
        v /= 5;
        count++;
    }
    return count;
}

static int multiple_of_pow5(uint64_t v, uint32_t p) { return pow5_factor(v) >= p; }
static int multiple_of_pow2(uint64_t v, uint32_t p) { return (v & ((1ull << p) - 1)) == 0; }

/* The shortest digits of a finite, nonzero double: value = digits * 10^exponent. */
static void shortest(uint64_t mantissa, uint32_t exponent, uint64_t *digits,
                     int32_t *exp10) {
    int32_t e2;
    uint64_t m2;
    if (exponent == 0) {
        e2 = 1 - 1023 - 52 - 2;
        m2 = mantissa;
    } else {
        e2 = (int32_t)exponent - 1023 - 52 - 2;
        m2 = (1ull << 52) | mantissa;
    }
    int accept_bounds = (m2 & 1) == 0;  /* ties to even when read back */
    uint64_t mv = 4 * m2;
    uint32_t mm_shift = mantissa != 0 || exponent <= 1;
    uint64_t vr, vp, vm;
    int32_t e10;
    int vm_zeros = 0, vr_zeros = 0;
    if (e2 >= 0) {
        uint32_t q = log10pow2(e2) - (e2 > 3);
        e10 = (int32_t)q;
        int32_t k = RYU_POW5_INV_BITS + pow5bits((int32_t)q) - 1;
        int32_t i = -e2 + (int32_t)q + k;
        vr = mul_shift(4 * m2, RYU_POW5_INV[q], i);
        vp = mul_shift(4 * m2 + 2, RYU_POW5_INV[q], i);
        vm = mul_shift(4 * m2 - 1 - mm_shift, RYU_POW5_INV[q], i);
        if (q <= 21) {
            if (mv % 5 == 0) vr_zeros = multiple_of_pow5(mv, q);
            else if (accept_bounds) vm_zeros = multiple_of_pow5(mv - 1 - mm_shift, q);
            else vp -= (uint64_t)multiple_of_pow5(mv + 2, q);
        }
    } else {
        uint32_t q = log10pow5(-e2) - (-e2 > 1);
        e10 = (int32_t)q + e2;
        int32_t i = -e2 - (int32_t)q;
        int32_t k = pow5bits(i) - RYU_POW5_BITS;
        int32_t j = (int32_t)q - k;
        vr = mul_shift(4 * m2, RYU_POW5[i], j);
        vp = mul_shift(4 * m2 + 2, RYU_POW5[i], j);
        vm = mul_shift(4 * m2 - 1 - mm_shift, RYU_POW5[i], j);
        if (q <= 1) {
            vr_zeros = 1;
            if (accept_bounds) vm_zeros = mm_shift == 1;
            else vp--;
        } else if (q < 63) {
            vr_zeros = multiple_of_pow2(mv, q);
        }
    }
    int32_t removed = 0;
    uint64_t out;
    if (vm_zeros || vr_zeros) {  /* the rare general case */
        uint32_t last = 0;
        while (vp / 10 > vm / 10) {
            vm_zeros &= vm % 10 == 0;
            vr_zeros &= last == 0;
            last = (uint32_t)(vr % 10);
            vr /= 10;
            vp /= 10;
            vm /= 10;
            removed++;
        }
        if (vm_zeros) {
            while (vm % 10 == 0) {
                vr_zeros &= last == 0;
                last = (uint32_t)(vr % 10);
                vr /= 10;
                vp /= 10;
                vm /= 10;
                removed++;
            }
        }
        if (vr_zeros && last == 5 && vr % 2 == 0) last = 4;  /* exactly .5: to even */
        out = vr + ((vr == vm && (!accept_bounds || !vm_zeros)) || last >= 5);
    } else {
        int round_up = 0;
        if (vp / 100 > vm / 100) {
            round_up = vr % 100 >= 50;
            vr /= 100;
            vp /= 100;
            vm /= 100;
            removed += 2;
        }
        while (vp / 10 > vm / 10) {
            round_up = vr % 10 >= 5;
            vr /= 10;
            vp /= 10;
            vm /= 10;
            removed++;
        }
        out = vr + (vr == vm || round_up);
    }
    *digits = out;
    *exp10 = e10 + removed;
}

int tlw_float(tlw_buf *b, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    int negative = (int)(bits >> 63);
    uint64_t mantissa = bits & ((1ull << 52) - 1);
    uint32_t exponent = (uint32_t)((bits >> 52) & 0x7ff);
    if (tlw_reserve(b, 32) < 0) return -1;
    char *p = b->p + b->len;
    if (exponent == 0x7ff) {
        const char *text = mantissa ? "nan" : negative ? "-inf" : "inf";
        size_t n = strlen(text);
        memcpy(p, text, n);
        b->len += n;
        return 0;
    }
    if (negative) *p++ = '-';
    if (exponent == 0 && mantissa == 0) {
        memcpy(p, "0.0", 3);
        b->len = (size_t)(p + 3 - b->p);
        return 0;
    }
    uint64_t digits;
    int32_t exp10;
    shortest(mantissa, exponent, &digits, &exp10);
    char d[20] = {0};
    size_t n = 0;  /* 1 to 17 digits */
    for (uint64_t x = digits; x && n < sizeof d; x /= 10) n++;
    for (size_t i = n; i > 0; i--) {
        d[i - 1] = (char)('0' + digits % 10);
        digits /= 10;
    }
    int32_t decpt = (int32_t)n + exp10;  /* value = 0.d * 10^decpt */
    if (decpt <= -4 || decpt > 16) {
        *p++ = d[0];
        if (n > 1) {
            *p++ = '.';
            memcpy(p, d + 1, n - 1);
            p += n - 1;
        }
        int32_t e = decpt - 1;
        *p++ = 'e';
        *p++ = e < 0 ? '-' : '+';
        if (e < 0) e = -e;
        if (e >= 100) *p++ = (char)('0' + e / 100);
        *p++ = (char)('0' + e / 10 % 10);
        *p++ = (char)('0' + e % 10);
    } else if (decpt <= 0) {  /* 0.000ddd */
        *p++ = '0';
        *p++ = '.';
        for (int32_t i = decpt; i < 0; i++) *p++ = '0';
        memcpy(p, d, n);
        p += n;
    } else {
        size_t point = (size_t)decpt;  /* 1 to 16 */
        for (size_t i = 0; i < n || i < point; i++) {
            if (i == point) *p++ = '.';
            *p++ = i < n ? d[i] : '0';
        }
        if (point >= n) {  /* a whole number: ".0" */
            *p++ = '.';
            *p++ = '0';
        }
    }
    b->len = (size_t)(p - b->p);
    return 0;
}
