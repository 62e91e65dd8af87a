/*
 * ota_crypto.h: the only door to Mbed TLS. SHA-256 (streaming) and ECDSA P-256 verification of a
 * DER signature over a 32-byte digest with an uncompressed public point.
 *
 * Does not: sign, generate keys, need an RNG, or use a heap: Mbed TLS allocations come from a static
 * arena of OTA_CRYPTO_ARENA bytes, set up on first use.
 */
#ifndef OTA_CRYPTO_H
#define OTA_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "mbedtls/sha256.h"

typedef mbedtls_sha256_context ota_sha256_t;

void ota_sha256_start(ota_sha256_t *ctx);
void ota_sha256_update(ota_sha256_t *ctx, const void *data, size_t n);
void ota_sha256_finish(ota_sha256_t *ctx, uint8_t out[32]);
void ota_sha256(const void *data, size_t n, uint8_t out[32]);

/* 0 if `sig` (ASN.1 DER ECDSA-Sig-Value) is valid for `digest` under `point` (0x04||X||Y);
 * -2 if the arena was too small (a build configuration error, not a verdict), -1 otherwise. */
int ota_ecdsa_p256_verify(const uint8_t point[65], const uint8_t digest[32], const uint8_t *sig, size_t sig_len);

/* Constant-time comparison of n bytes; 0 if equal. */
int ota_ct_compare(const void *a, const void *b, size_t n);

#endif
