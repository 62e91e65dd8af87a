/*
 * ota_frame.h: block frames (docs/protocol.md 4.3) and the CRC-32 they carry.
 *
 * Does: decode and check the 13-byte big-endian header and the CRC-32 (zlib/IEEE) over header and
 * block bytes. Does not: check the frame against a job (stream, total, length: ota_agent.c does).
 */
#ifndef OTA_FRAME_H
#define OTA_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define OTA_FRAME_HEADER 13u

typedef struct {
    uint16_t stream;
    uint32_t index, total;
    const uint8_t *data;
    uint32_t len;
} ota_frame_t;

/* CRC-32 as zlib.crc32(data, crc): pass 0 to start. Bitwise (no 1 KiB table in flash). */
uint32_t ota_crc32(uint32_t crc, const uint8_t *data, size_t n);
/* 0 if buf is a version-1 frame with a correct CRC and index < total; -1 otherwise. */
int ota_frame_decode(const uint8_t *buf, size_t n, ota_frame_t *out);

#endif
