/* ota_crypto.c: SHA-256 and ECDSA P-256 verify through Mbed TLS, on a static arena; see ota_crypto.h. */
#include "ota_crypto.h"

#include "ota_config.h"
#include "ota_port.h"
#include "mbedtls/ecdsa.h"
#include "mbedtls/memory_buffer_alloc.h"

static unsigned char arena[OTA_CRYPTO_ARENA];
static int arena_ready;

void *ota_no_calloc(size_t n, size_t size) { (void)n; (void)size; return NULL; }
void ota_no_free(void *p) { (void)p; }

/* Mbed TLS's arena found itself corrupted (a bug, never input-dependent): reset rather than go on. */
void ota_crypto_panic(int code)
{
    (void)code;
    ota_port_reboot();
    for (;;) {}
}

void ota_sha256_start(ota_sha256_t *ctx)
{
    mbedtls_sha256_init(ctx);
    (void)mbedtls_sha256_starts_ret(ctx, 0);
}

void ota_sha256_update(ota_sha256_t *ctx, const void *data, size_t n)
{
    (void)mbedtls_sha256_update_ret(ctx, (const unsigned char *)data, n);
}

void ota_sha256_finish(ota_sha256_t *ctx, uint8_t out[32])
{
    (void)mbedtls_sha256_finish_ret(ctx, out);
    mbedtls_sha256_free(ctx);
}

void ota_sha256(const void *data, size_t n, uint8_t out[32])
{
    ota_sha256_t c;
    ota_sha256_start(&c);
    ota_sha256_update(&c, data, n);
    ota_sha256_finish(&c, out);
}

int ota_ecdsa_p256_verify(const uint8_t point[65], const uint8_t digest[32], const uint8_t *sig, size_t sig_len)
{
    mbedtls_ecdsa_context ecdsa;
    int rc;
    if (!arena_ready) {
        mbedtls_memory_buffer_alloc_init(arena, sizeof arena);
        arena_ready = 1;
    }
    mbedtls_ecdsa_init(&ecdsa);
    rc = mbedtls_ecp_group_load(&ecdsa.grp, MBEDTLS_ECP_DP_SECP256R1);
    if (rc == 0) rc = mbedtls_ecp_point_read_binary(&ecdsa.grp, &ecdsa.Q, point, 65);
    if (rc == 0) rc = mbedtls_ecp_check_pubkey(&ecdsa.grp, &ecdsa.Q);
    if (rc == 0) rc = mbedtls_ecdsa_read_signature(&ecdsa, digest, 32, sig, sig_len);
    mbedtls_ecdsa_free(&ecdsa);
    if (rc == MBEDTLS_ERR_MPI_ALLOC_FAILED || rc == MBEDTLS_ERR_ECP_ALLOC_FAILED) return -2;
    return rc == 0 ? 0 : -1;
}

int ota_ct_compare(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    uint8_t d = 0;
    for (size_t i = 0; i < n; i++) d |= (uint8_t)(x[i] ^ y[i]);
    return d != 0;
}
