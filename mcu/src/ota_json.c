/* ota_json.c: strict in-place scanner for canonical JSON; see ota_json.h. */
#include "ota_json.h"

#include <string.h>

#define MAX_DEPTH 16

static const char *skip_string(const char *p, const char *end)
{
    if (p >= end || *p != '"') return NULL;
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') return p + 1;
        if (c < 0x20) return NULL;
        if (c == '\\') {
            if (++p >= end) return NULL;
            switch (*p) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': break;
            case 'u':
                for (int i = 0; i < 4; i++) {
                    char h;
                    if (++p >= end) return NULL;
                    h = *p;
                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F'))) return NULL;
                }
                break;
            default: return NULL;
            }
        }
    }
    return NULL;
}

static const char *skip_number(const char *p, const char *end)
{
    if (p < end && *p == '-') p++;
    if (p >= end || *p < '0' || *p > '9') return NULL;
    if (*p == '0') return p + 1;  /* no leading zeros; no fraction or exponent in canonical output */
    while (p < end && *p >= '0' && *p <= '9') p++;
    return p;
}

static const char *skip_literal(const char *p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    return ((size_t)(end - p) >= n && memcmp(p, lit, n) == 0) ? p + n : NULL;
}

/* Keys must be strictly increasing byte strings (canonical order, hence no duplicates). */
static int key_less(const char *a, size_t an, const char *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int c = memcmp(a, b, n);
    return c < 0 || (c == 0 && an < bn);
}

const char *ota_json_skip(const char *p, const char *end, int depth)
{
    if (p >= end || depth > MAX_DEPTH) return NULL;
    switch (*p) {
    case '"': return skip_string(p, end);
    case 't': return skip_literal(p, end, "true");
    case 'f': return skip_literal(p, end, "false");
    case 'n': return skip_literal(p, end, "null");
    case '[':
        p++;
        if (p < end && *p == ']') return p + 1;
        for (;;) {
            p = ota_json_skip(p, end, depth + 1);
            if (!p || p >= end) return NULL;
            if (*p == ']') return p + 1;
            if (*p++ != ',') return NULL;
        }
    case '{': {
        const char *prev = NULL;
        size_t prevn = 0;
        p++;
        if (p < end && *p == '}') return p + 1;
        for (;;) {
            const char *k = p;
            p = skip_string(p, end);
            if (!p || p >= end || *p != ':') return NULL;
            if (prev && !key_less(prev, prevn, k, (size_t)(p - k))) return NULL;
            prev = k;
            prevn = (size_t)(p - k);
            p = ota_json_skip(p + 1, end, depth + 1);
            if (!p || p >= end) return NULL;
            if (*p == '}') return p + 1;
            if (*p++ != ',') return NULL;
        }
    }
    default: return skip_number(p, end);
    }
}

int ota_json_get(ota_span_t obj, const char *key, ota_span_t *out)
{
    const char *p = obj.p, *end = obj.p + obj.n;
    size_t kn = strlen(key);
    if (obj.n < 2 || *p != '{') return -1;
    p++;
    if (*p == '}') return -1;
    for (;;) {
        const char *k = p, *v;
        p = skip_string(p, end);
        if (!p || p >= end || *p != ':') return -1;
        v = p + 1;
        p = ota_json_skip(v, end, 1);
        if (!p || p >= end) return -1;
        if ((size_t)(v - k) == kn + 3 && memcmp(k + 1, key, kn) == 0) {
            out->p = v;
            out->n = (size_t)(p - v);
            return 0;
        }
        if (*p == '}') return -1;
        if (*p++ != ',') return -1;
    }
}

int ota_json_str(ota_span_t v, char *out, size_t cap)
{
    if (v.n < 2 || v.p[0] != '"' || v.n - 2 >= cap) return -1;
    for (size_t i = 1; i + 1 < v.n; i++)
        if (v.p[i] == '\\') return -1;
    memcpy(out, v.p + 1, v.n - 2);
    out[v.n - 2] = '\0';
    return 0;
}

int ota_json_eq(ota_span_t v, const char *s)
{
    size_t n = strlen(s);
    return v.n == n + 2 && v.p[0] == '"' && memcmp(v.p + 1, s, n) == 0;
}

int ota_json_u32(ota_span_t v, uint32_t *out)
{
    uint64_t x = 0;
    if (v.n == 0 || v.n > 10 || v.p[0] < '0' || v.p[0] > '9') return -1;
    for (size_t i = 0; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') return -1;
        x = x * 10u + (uint64_t)(v.p[i] - '0');
    }
    if (x > 0xFFFFFFFFu) return -1;
    *out = (uint32_t)x;
    return 0;
}

int ota_json_next(ota_span_t arr, const char **it, ota_span_t *elem)
{
    const char *p = *it, *end = arr.p + arr.n, *q;
    if (arr.n < 2 || arr.p[0] != '[') return -1;
    if (p == arr.p) p++;            /* first call: step over '[' */
    else if (*p == ',') p++;
    else return 0;                  /* at ']' */
    if (p >= end) return -1;
    if (*p == ']') return 0;
    q = ota_json_skip(p, end, 1);
    if (!q || q >= end) return -1;
    elem->p = p;
    elem->n = (size_t)(q - p);
    *it = q;
    return 1;
}
