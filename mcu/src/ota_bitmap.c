/* ota_bitmap.c: block bitmap, ack and repair request encoding; see ota_bitmap.h. */
#include "ota_bitmap.h"

int ota_bm_get(const uint8_t *bm, uint32_t i) { return (bm[i >> 3] >> (i & 7u)) & 1u; }
void ota_bm_set(uint8_t *bm, uint32_t i) { bm[i >> 3] = (uint8_t)(bm[i >> 3] | (1u << (i & 7u))); }

uint32_t ota_bm_contiguous(const uint8_t *bm, uint32_t count)
{
    uint32_t n = 0;
    while (n < count && ota_bm_get(bm, n)) n++;
    return n;
}

uint32_t ota_bm_held(const uint8_t *bm, uint32_t count)
{
    uint32_t h = 0;
    for (uint32_t i = 0; i < count; i++) h += (uint32_t)ota_bm_get(bm, i);
    return h;
}

/* Base64 of the bits [from, count) where want(bit) selects them, streamed 3 bytes at a time;
 * trailing zero bytes are not written. */
static void shifted_b64(ota_writer_t *w, const uint8_t *bm, uint32_t from, uint32_t count, int want)
{
    uint32_t nbytes = 0, j;
    uint8_t chunk[3];
    size_t fill = 0;
    for (j = 0; from + 8u * j < count; j++) {   /* find the last nonzero byte */
        uint8_t b = 0;
        for (uint32_t k = 0; k < 8 && from + 8u * j + k < count; k++)
            if (ota_bm_get(bm, from + 8u * j + k) == want) b = (uint8_t)(b | (1u << k));
        if (b) nbytes = j + 1;
    }
    if (!nbytes) return;
    ota_w_raw(w, "\"b\":\"");
    for (j = 0; j < nbytes; j++) {
        uint8_t b = 0;
        for (uint32_t k = 0; k < 8 && from + 8u * j + k < count; k++)
            if (ota_bm_get(bm, from + 8u * j + k) == want) b = (uint8_t)(b | (1u << k));
        chunk[fill++] = b;
        if (fill == 3 || j + 1 == nbytes) { ota_w_b64(w, chunk, fill); fill = 0; }
    }
    ota_w_raw(w, "\",");
}

static void tail(ota_writer_t *w, uint16_t stream, const char *exec)
{
    ota_w_raw(w, ",\"s\":");
    ota_w_u32(w, stream);
    ota_w_raw(w, ",\"x\":");
    ota_w_qstr(w, exec);
    ota_w_raw(w, "}");
}

void ota_bm_ack(ota_writer_t *w, const uint8_t *bm, uint32_t count, const char *exec, uint16_t stream)
{
    uint32_t n = ota_bm_contiguous(bm, count);
    ota_w_raw(w, "{");
    shifted_b64(w, bm, n, count, 1);
    ota_w_raw(w, "\"n\":");
    ota_w_u32(w, n);
    tail(w, stream, exec);
}

int ota_bm_request(ota_writer_t *w, const uint8_t *bm, uint32_t count, const char *exec, uint16_t stream)
{
    uint32_t o = ota_bm_contiguous(bm, count);
    if (o >= count) return 0;
    ota_w_raw(w, "{");
    shifted_b64(w, bm, o, count, 0);
    ota_w_raw(w, "\"o\":");
    ota_w_u32(w, o);
    tail(w, stream, exec);
    return 1;
}
