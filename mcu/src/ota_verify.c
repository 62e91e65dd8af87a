/* ota_verify.c: streaming verification of the secondary slot; see ota_verify.h. */
#include "ota_verify.h"

#include <string.h>

#include "ota_mcuboot.h"

#define MAX_SIG 80u

/* DER SubjectPublicKeyInfo prefix of an uncompressed P-256 key (id-ecPublicKey, prime256v1). */
static const uint8_t SPKI_P256[26] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
};

static uint8_t chunk[OTA_READ_CHUNK];

/* Hash the slot: package, payload and image digests in one pass. -1 on a flash error. */
static int hash_slot(const ota_record_t *rec, uint32_t image_end, uint8_t pkg[32], uint8_t pay[32], uint8_t img[32])
{
    ota_sha256_t p = rec->prefix, q, m;
    ota_sha256_start(&q);
    ota_sha256_start(&m);
    for (uint32_t off = 0; off < rec->payload_len; off += OTA_READ_CHUNK) {
        uint32_t n = rec->payload_len - off < OTA_READ_CHUNK ? rec->payload_len - off : OTA_READ_CHUNK;
        if (ota_port_flash_read(OTA_SLOT_SECONDARY, off, chunk, n) != 0) return -1;
        ota_sha256_update(&p, chunk, n);
        ota_sha256_update(&q, chunk, n);
        if (off < image_end) ota_sha256_update(&m, chunk, image_end - off < n ? image_end - off : n);
    }
    ota_sha256_finish(&p, pkg);
    ota_sha256_finish(&q, pay);
    ota_sha256_finish(&m, img);
    return 0;
}

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }

/* Walk the unprotected TLV area: hash, key hash, signature. */
static ota_reason_t check_tlvs(uint32_t off, uint32_t end, const uint8_t img[32], const uint8_t key[65])
{
    uint8_t th[4], val[MAX_SIG], keyhash[32];
    ota_sha256_t k;
    int hash_ok = 0;
    ota_sha256_start(&k);
    ota_sha256_update(&k, SPKI_P256, sizeof SPKI_P256);
    ota_sha256_update(&k, key, 65);
    ota_sha256_finish(&k, keyhash);
    for (off += 4; off + 4 <= end;) {
        uint32_t type, len;
        if (ota_port_flash_read(OTA_SLOT_SECONDARY, off, th, 4) != 0) return OTA_R_FLASH;
        type = le16(th);
        len = le16(th + 2);
        off += 4;
        if (off + len > end) return OTA_R_IMAGE_FORMAT;
        if (type == OTA_TLV_SHA256 || type == OTA_TLV_KEYHASH || type == OTA_TLV_ECDSA_SIG) {
            if (len > MAX_SIG || ota_port_flash_read(OTA_SLOT_SECONDARY, off, val, len) != 0) return OTA_R_IMAGE_FORMAT;
            if (type == OTA_TLV_SHA256) {
                if (len != 32 || ota_ct_compare(val, img, 32) != 0) return OTA_R_IMAGE_HASH;
                hash_ok = 1;
            } else if (type == OTA_TLV_KEYHASH) {
                if (len != 32 || ota_ct_compare(val, keyhash, 32) != 0) return OTA_R_IMAGE_KEY;
            } else {
                /* MCUboot's order: the hash TLV comes first, the signature covers that hash */
                if (!hash_ok) return OTA_R_IMAGE_HASH;
                int rc = ota_ecdsa_p256_verify(key, img, val, len);
                return rc == 0 ? OTA_R_NONE : rc == -2 ? OTA_R_CRYPTO_MEMORY : OTA_R_IMAGE_SIGNATURE;
            }
        }
        off += len;
    }
    return hash_ok ? OTA_R_IMAGE_SIGNATURE : OTA_R_IMAGE_HASH;
}

ota_reason_t ota_verify_slot(const ota_record_t *rec, const uint8_t image_key[65])
{
    ota_image_header_t h;
    uint8_t pkg[32], pay[32], img[32];
    int header_ok = ota_image_header_read(OTA_SLOT_SECONDARY, &h) == 0;
    uint32_t image_end = header_ok ? (uint32_t)h.hdr_size + h.img_size + h.protect_tlv_size : 0;

    if (hash_slot(rec, image_end, pkg, pay, img) != 0) return OTA_R_FLASH;
    if (ota_ct_compare(pkg, rec->package_sha256, 32) != 0) return OTA_R_PACKAGE_HASH;
    if (ota_ct_compare(pay, rec->payload_sha256, 32) != 0) return OTA_R_PAYLOAD_HASH;
    if (!header_ok || image_end > rec->payload_len ||
        ota_image_total_size(OTA_SLOT_SECONDARY, &h) != rec->payload_len)
        return OTA_R_IMAGE_FORMAT;
    if (h.major != rec->version.major || h.minor != rec->version.minor || h.revision != rec->version.patch)
        return OTA_R_IMAGE_VERSION;
    return check_tlvs((uint32_t)h.hdr_size + h.img_size + h.protect_tlv_size, rec->payload_len, img, image_key);
}
