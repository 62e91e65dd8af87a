/*
 * ota_codec.h: small text codecs: base64 (standard alphabet, padded), lowercase hex, decimal,
 * MAJOR.MINOR.PATCH versions, UTC timestamps, and an append-only writer for the outgoing JSON.
 *
 * Does not: allocate, use printf, or escape strings (everything the device writes into JSON is
 * either a validated identifier or a fixed reason sentence).
 */
#ifndef OTA_CODEC_H
#define OTA_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Decode standard padded base64; returns the decoded length or -1 (bad input or over cap). */
int ota_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap);
/* n lowercase hex chars (n even) to n/2 bytes; 0 on success. */
int ota_hex_decode(const char *in, size_t n, uint8_t *out);
/* 64 lowercase hex chars to 32 bytes; 0 on success. */
int ota_hex32(const char *in, size_t n, uint8_t out[32]);

typedef struct { uint32_t major, minor, patch; } ota_version_t;
/* "MAJOR.MINOR.PATCH", each 0..999999 without leading zeros; 0 on success. */
int ota_version_parse(const char *s, size_t n, ota_version_t *v);
int ota_version_cmp(const ota_version_t *a, const ota_version_t *b);

/* "YYYY-MM-DDTHH:MM:SSZ" for epoch seconds (20 chars + NUL). */
void ota_utc_format(uint32_t epoch, char out[21]);

/* Writer over a fixed buffer; `ok` drops to 0 on overflow and stays there. */
typedef struct { char *buf; size_t cap, len; int ok; } ota_writer_t;
void ota_w_init(ota_writer_t *w, char *buf, size_t cap);
void ota_w_raw(ota_writer_t *w, const char *s);
void ota_w_u32(ota_writer_t *w, uint32_t v);
void ota_w_u64(ota_writer_t *w, uint64_t v);
void ota_w_qstr(ota_writer_t *w, const char *s);    /* "s" (s must need no escaping) */
void ota_w_b64(ota_writer_t *w, const uint8_t *data, size_t n);
void ota_w_version(ota_writer_t *w, uint32_t major, uint32_t minor, uint32_t patch);

#endif
