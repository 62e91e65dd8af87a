/* ota_codec.c: base64, hex, decimal, versions, timestamps, JSON writer; see ota_codec.h. */
#include "ota_codec.h"

#include <string.h>

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int ota_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    size_t len = 0;
    if (n == 0 || n % 4 != 0) return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            if (in[i + j] == '=' && i + 4 == n && j >= 2) { v[j] = 0; pad++; continue; }
            if (pad) return -1;
            v[j] = b64_val(in[i + j]);
            if (v[j] < 0) return -1;
        }
        uint32_t t = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) | (uint32_t)v[3];
        for (int j = 0; j < 3 - pad; j++) {
            if (len >= cap) return -1;
            out[len++] = (uint8_t)(t >> (16 - 8 * j));
        }
    }
    return (int)len;
}

int ota_hex_decode(const char *in, size_t n, uint8_t *out)
{
    if (n % 2 != 0) return -1;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (v < 0) return -1;
        if (i % 2 == 0) out[i / 2] = (uint8_t)(v << 4);
        else out[i / 2] = (uint8_t)(out[i / 2] | v);
    }
    return 0;
}

int ota_hex32(const char *in, size_t n, uint8_t out[32]) { return n == 64 ? ota_hex_decode(in, n, out) : -1; }

int ota_version_parse(const char *s, size_t n, ota_version_t *v)
{
    uint32_t f[3] = {0, 0, 0};
    size_t i = 0;
    for (int k = 0; k < 3; k++) {
        size_t start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (i - start >= 6) return -1;
            f[k] = f[k] * 10u + (uint32_t)(s[i] - '0');
            i++;
        }
        if (i == start || (s[start] == '0' && i - start > 1)) return -1;
        if (k < 2) { if (i >= n || s[i] != '.') return -1; i++; }
    }
    if (i != n) return -1;
    v->major = f[0]; v->minor = f[1]; v->patch = f[2];
    return 0;
}

int ota_version_cmp(const ota_version_t *a, const ota_version_t *b)
{
    if (a->major != b->major) return a->major < b->major ? -1 : 1;
    if (a->minor != b->minor) return a->minor < b->minor ? -1 : 1;
    if (a->patch != b->patch) return a->patch < b->patch ? -1 : 1;
    return 0;
}

static void put2(char *p, uint32_t v) { p[0] = (char)('0' + v / 10u); p[1] = (char)('0' + v % 10u); }

void ota_utc_format(uint32_t epoch, char out[21])
{
    /* civil_from_days (H. Hinnant), integer only */
    uint32_t days = epoch / 86400u, secs = epoch % 86400u;
    uint32_t z = days + 719468u, era = z / 146097u, doe = z - era * 146097u;
    uint32_t yoe = (doe - doe / 1460u + doe / 36524u - doe / 146096u) / 365u;
    uint32_t doy = doe - (365u * yoe + yoe / 4u - yoe / 100u), mp = (5u * doy + 2u) / 153u;
    uint32_t d = doy - (153u * mp + 2u) / 5u + 1u, m = mp < 10u ? mp + 3u : mp - 9u;
    uint32_t y = yoe + era * 400u + (m <= 2u ? 1u : 0u);
    put2(out, y / 100u); put2(out + 2, y % 100u);
    out[4] = '-'; put2(out + 5, m); out[7] = '-'; put2(out + 8, d); out[10] = 'T';
    put2(out + 11, secs / 3600u); out[13] = ':'; put2(out + 14, secs / 60u % 60u); out[16] = ':';
    put2(out + 17, secs % 60u); out[19] = 'Z'; out[20] = '\0';
}

void ota_w_init(ota_writer_t *w, char *buf, size_t cap) { w->buf = buf; w->cap = cap; w->len = 0; w->ok = 1; }

static void w_bytes(ota_writer_t *w, const char *s, size_t n)
{
    if (!w->ok || w->len + n >= w->cap) { w->ok = 0; return; }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

void ota_w_raw(ota_writer_t *w, const char *s) { w_bytes(w, s, strlen(s)); }

void ota_w_u64(ota_writer_t *w, uint64_t v)
{
    char t[20];
    size_t i = sizeof t;
    do { t[--i] = (char)('0' + (unsigned)(v % 10u)); v /= 10u; } while (v);
    w_bytes(w, t + i, sizeof t - i);
}

void ota_w_u32(ota_writer_t *w, uint32_t v) { ota_w_u64(w, v); }

void ota_w_qstr(ota_writer_t *w, const char *s) { w_bytes(w, "\"", 1); ota_w_raw(w, s); w_bytes(w, "\"", 1); }

void ota_w_b64(ota_writer_t *w, const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i += 3) {
        uint32_t t = (uint32_t)d[i] << 16;
        char q[4];
        if (i + 1 < n) t |= (uint32_t)d[i + 1] << 8;
        if (i + 2 < n) t |= d[i + 2];
        q[0] = B64[(t >> 18) & 63]; q[1] = B64[(t >> 12) & 63];
        q[2] = i + 1 < n ? B64[(t >> 6) & 63] : '=';
        q[3] = i + 2 < n ? B64[t & 63] : '=';
        w_bytes(w, q, 4);
    }
}

void ota_w_version(ota_writer_t *w, uint32_t major, uint32_t minor, uint32_t patch)
{
    ota_w_u32(w, major); w_bytes(w, ".", 1); ota_w_u32(w, minor); w_bytes(w, ".", 1); ota_w_u32(w, patch);
}
