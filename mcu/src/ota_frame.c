/* ota_frame.c: block frame decoding and CRC-32; see ota_frame.h. */
#include "ota_frame.h"

uint32_t ota_crc32(uint32_t crc, const uint8_t *data, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *data++;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static uint32_t be(const uint8_t *p, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

int ota_frame_decode(const uint8_t *buf, size_t n, ota_frame_t *out)
{
    uint32_t crc;
    if (n < OTA_FRAME_HEADER + 1 || buf[0] != 1) return -1;
    crc = ota_crc32(0, buf, 9);
    crc = ota_crc32(crc, buf + OTA_FRAME_HEADER, n - OTA_FRAME_HEADER);
    if (crc != be(buf + 9, 4)) return -1;
    out->stream = (uint16_t)be(buf + 1, 2);
    out->index = be(buf + 3, 3);
    out->total = be(buf + 6, 3);
    if (out->index >= out->total) return -1;
    out->data = buf + OTA_FRAME_HEADER;
    out->len = (uint32_t)(n - OTA_FRAME_HEADER);
    return 0;
}
