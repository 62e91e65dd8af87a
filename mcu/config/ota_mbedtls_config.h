/*
 * Minimal Mbed TLS 2.28 configuration for the OTA MCU library.
 *
 * Enables exactly what the device needs: SHA-256 and ECDSA P-256 signature verification (manifest
 * signature and MCUboot image signature). No TLS, no RNG, no key generation, no PEM, no file system.
 * Memory: Mbed TLS's bignum code allocates; MBEDTLS_MEMORY_BUFFER_ALLOC_C serves those allocations
 * from one static arena (ota_crypto.c), so the library never touches a system heap.
 */
#ifndef OTA_MBEDTLS_CONFIG_H
#define OTA_MBEDTLS_CONFIG_H

#define MBEDTLS_HAVE_ASM
#define MBEDTLS_NO_PLATFORM_ENTROPY

#define MBEDTLS_PLATFORM_C
#define MBEDTLS_PLATFORM_MEMORY
#define MBEDTLS_MEMORY_BUFFER_ALLOC_C
/* Defaults before the arena is installed: refuse, so no libc malloc is ever linked in. */
#include <stddef.h>
void *ota_no_calloc(size_t n, size_t size);
void ota_no_free(void *p);
#define MBEDTLS_PLATFORM_STD_CALLOC ota_no_calloc
#define MBEDTLS_PLATFORM_STD_FREE ota_no_free
/* The arena allocator "exits" on a corrupted heap: reset the MCU instead of linking libc's exit. */
void ota_crypto_panic(int code);
#define MBEDTLS_PLATFORM_EXIT_MACRO ota_crypto_panic

#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA256_SMALLER

#define MBEDTLS_BIGNUM_C
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_NIST_OPTIM
#define MBEDTLS_ECP_NO_INTERNAL_RNG
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C

/* RAM over speed: small windows, no precomputed fixed-point tables. */
#define MBEDTLS_MPI_WINDOW_SIZE 1
#define MBEDTLS_MPI_MAX_SIZE 32
#define MBEDTLS_ECP_MAX_BITS 256
#define MBEDTLS_ECP_WINDOW_SIZE 2
#define MBEDTLS_ECP_FIXED_POINT_OPTIM 0

#include "mbedtls/check_config.h"
#endif
