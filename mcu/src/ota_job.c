/* ota_job.c: job document and manifest checks before download; see ota_job.h. */
#include "ota_job.h"

#include <string.h>

#include "ota_json.h"
#include "ota_mcuboot.h"

#define MAX_SIG_DER 80u

static const char *const TEXT[] = {
    [OTA_R_NONE] = "",
    [OTA_R_SUCCEEDED] = "",
    [OTA_R_MALFORMED] = "malformed: the job document or manifest is not one this device accepts",
    [OTA_R_WRONG_DEVICE] = "malformed: the job document names another device",
    [OTA_R_UNSIGNED] = "unsigned: the manifest has no signature",
    [OTA_R_UNTRUSTED_KEY] = "untrusted-key: no signature is by a publisher key this device trusts",
    [OTA_R_BAD_SIGNATURE] = "bad-signature: the manifest signature does not verify",
    [OTA_R_WRONG_KIND] = "malformed: not a firmware package",
    [OTA_R_WRONG_APP] = "malformed: the package is for another app than this device's firmware",
    [OTA_R_WRONG_MODEL] = "wrong-model: this device's model is not in the manifest's models",
    [OTA_R_EXPIRED] = "expired: the manifest has expired",
    [OTA_R_DOWNGRADE] = "downgrade: the version is below the device's version floor",
    [OTA_R_AGENT_TOO_OLD] = "agent-too-old: the package needs a newer device agent",
    [OTA_R_UNSUPPORTED_PAYLOAD] = "malformed: not a single uncompressed full image (built with ota-pack --mcuboot)",
    [OTA_R_TOO_LARGE] = "too-large: the image does not fit the secondary slot or the block bitmap",
    [OTA_R_UNALIGNED] = "malformed: the payload or block size is not aligned to the flash write size",
    [OTA_R_PAYLOAD_HASH] = "hash: the image in the slot does not match the manifest's payload SHA-256",
    [OTA_R_IMAGE_FORMAT] = "malformed: the payload is not a valid MCUboot image",
    [OTA_R_IMAGE_VERSION] = "malformed: the MCUboot image version differs from the manifest version",
    [OTA_R_IMAGE_HASH] = "hash: the MCUboot image does not match its SHA-256 TLV",
    [OTA_R_IMAGE_KEY] = "untrusted-key: the MCUboot image is not signed by this device's image key",
    [OTA_R_IMAGE_SIGNATURE] = "bad-signature: the MCUboot image signature does not verify",
    [OTA_R_URL_MODE] = "url mode is not supported by this device",
    [OTA_R_BLOCK_SIZE] = "block size or block count exceeds this device's buffers",
    [OTA_R_PACKAGE_HASH] = "package SHA-256 differs from the job's (corrupted transfer)",
    [OTA_R_STALLED] = "download stalled: no new data within the stall budget",
    [OTA_R_CANCELED] = "canceled by the cloud before install",
    [OTA_R_FLASH] = "flash error while writing the secondary slot",
    [OTA_R_SELF_TEST] = "self-test of the new image failed; the bootloader reverts it on the next reset",
    [OTA_R_REVERTED] = "the new image was not confirmed; the bootloader reverted to the previous image",
    [OTA_R_CRYPTO_MEMORY] = "signature check ran out of its static arena (OTA_CRYPTO_ARENA too small)",
};

const char *ota_reason_text(ota_reason_t r) { return (unsigned)r < sizeof TEXT / sizeof TEXT[0] ? TEXT[r] : ""; }

const char *ota_reason_state(ota_reason_t r)
{
    if (r == OTA_R_SUCCEEDED) return "SUCCEEDED";
    return (r >= OTA_R_MALFORMED && r <= OTA_R_LAST_REJECTED) ? "REJECTED" : "FAILED";
}

static int get_u32(ota_span_t obj, const char *key, uint32_t *out)
{
    ota_span_t v;
    return ota_json_get(obj, key, &v) == 0 ? ota_json_u32(v, out) : -1;
}

static int get_hex32(ota_span_t obj, const char *key, uint8_t out[32])
{
    ota_span_t v;
    if (ota_json_get(obj, key, &v) != 0 || v.n != 66 || v.p[0] != '"') return -1;
    return ota_hex32(v.p + 1, 64, out);
}

static int is_id(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Exec ids go back into JSON we write: allow only characters that need no escaping. */
static int is_safe_text(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\' || (unsigned char)*s > 0x7e) return 0;
    return 1;
}

/* Signature check (docs/package-format.md 4): one valid entry by a pinned key is enough. */
static ota_reason_t check_signatures(const ota_identity_t *id, ota_span_t sigs, const uint8_t digest[32])
{
    const char *it = sigs.p;
    ota_span_t e, v;
    int n = 0, known = 0, r;
    while ((r = ota_json_next(sigs, &it, &e)) == 1) {
        uint8_t der[MAX_SIG_DER], kid[8];
        char hex[17];
        int len;
        if (++n > 8) return OTA_R_MALFORMED;
        if (ota_json_get(e, "alg", &v) != 0 || !ota_json_eq(v, "ecdsa-p256-sha256")) continue;
        if (ota_json_get(e, "keyid", &v) != 0 || ota_json_str(v, hex, sizeof hex) != 0 || strlen(hex) != 16) continue;
        if (ota_hex_decode(hex, 16, kid) != 0) continue;
        for (uint8_t k = 0; k < id->publisher_count; k++) {
            if (memcmp(kid, id->publishers[k].keyid, 8) != 0) continue;
            known = 1;
            if (ota_json_get(e, "sig", &v) != 0 || v.n < 3 || v.p[0] != '"') break;
            len = ota_b64_decode(v.p + 1, v.n - 2, der, sizeof der);
            if (len <= 0) break;
            len = ota_ecdsa_p256_verify(id->publishers[k].point, digest, der, (size_t)len);
            if (len == 0) return OTA_R_NONE;
            if (len == -2) return OTA_R_CRYPTO_MEMORY;
        }
    }
    if (r < 0) return OTA_R_MALFORMED;
    if (n == 0) return OTA_R_UNSIGNED;
    return known ? OTA_R_BAD_SIGNATURE : OTA_R_UNTRUSTED_KEY;
}

static int models_contain(ota_span_t models, const char *model)
{
    const char *it = models.p;
    ota_span_t e;
    while (ota_json_next(models, &it, &e) == 1)
        if (ota_json_eq(e, model)) return 1;
    return 0;
}

/* The manifest, now authenticated: kind, app, model, expiry, floor, payload shape. */
static ota_reason_t check_manifest(const ota_identity_t *id, const ota_version_t *floor, ota_span_t m,
                                   ota_record_t *rec)
{
    ota_span_t v, payload, files, file;
    char text[72];
    const char *it;
    ota_version_t agent, need;
    uint32_t raw_len;

    if (get_u32(m, "format", &raw_len) != 0 || raw_len != 1) return OTA_R_MALFORMED;
    if (ota_json_get(m, "kind", &v) != 0 || !ota_json_eq(v, "firmware")) return OTA_R_WRONG_KIND;
    if (ota_json_get(m, "app", &v) != 0 || !ota_json_eq(v, id->app)) return OTA_R_WRONG_APP;
    if (ota_json_get(m, "models", &v) != 0 || !models_contain(v, id->model)) return OTA_R_WRONG_MODEL;
    if (ota_json_get(m, "expires", &v) != 0 || ota_json_str(v, text, sizeof text) != 0 || strlen(text) != 20)
        return OTA_R_MALFORMED;
    if (ota_port_wall_time() != 0) {
        char now[21];
        ota_utc_format(ota_port_wall_time(), now);
        if (memcmp(now, text, 20) >= 0) return OTA_R_EXPIRED;
    }
    if (ota_json_get(m, "version", &v) != 0 || ota_json_str(v, text, sizeof text) != 0 ||
        ota_version_parse(text, strlen(text), &rec->version) != 0)
        return OTA_R_MALFORMED;
    if (ota_version_cmp(&rec->version, floor) < 0) return OTA_R_DOWNGRADE;
    if (ota_json_get(m, "min_agent_version", &v) != 0 || ota_json_str(v, text, sizeof text) != 0 ||
        ota_version_parse(text, strlen(text), &need) != 0)
        return OTA_R_MALFORMED;
    (void)ota_version_parse(OTA_AGENT_VERSION, sizeof OTA_AGENT_VERSION - 1, &agent);
    if (ota_version_cmp(&agent, &need) < 0) return OTA_R_AGENT_TOO_OLD;
    /* a full, uncompressed, single-file image: the payload is the MCUboot image, byte for byte */
    if (ota_json_get(m, "delta", &v) == 0 && !(v.n == 4 && memcmp(v.p, "null", 4) == 0))
        return OTA_R_UNSUPPORTED_PAYLOAD;
    if (ota_json_get(m, "payload", &payload) != 0 || ota_json_get(payload, "compression", &v) != 0)
        return OTA_R_MALFORMED;
    if (!ota_json_eq(v, "none")) return OTA_R_UNSUPPORTED_PAYLOAD;
    if (get_u32(payload, "length", &rec->payload_len) != 0 || get_u32(payload, "raw_length", &raw_len) != 0 ||
        get_hex32(payload, "sha256", rec->payload_sha256) != 0)
        return OTA_R_MALFORMED;
    if (raw_len != rec->payload_len) return OTA_R_UNSUPPORTED_PAYLOAD;
    if (ota_json_get(m, "files", &files) != 0) return OTA_R_MALFORMED;
    it = files.p;
    if (ota_json_next(files, &it, &file) != 1 || ota_json_get(file, "path", &v) != 0 ||
        !ota_json_eq(v, "image.bin") || ota_json_next(files, &it, &file) != 0)
        return OTA_R_UNSUPPORTED_PAYLOAD;
    if (ota_json_get(m, "scripts", &v) == 0 && !(v.n == 2 && v.p[0] == '{')) return OTA_R_UNSUPPORTED_PAYLOAD;
    return OTA_R_NONE;
}

ota_reason_t ota_job_accept(const ota_identity_t *id, const ota_version_t *floor,
                            const char *doc, size_t len, ota_record_t *rec)
{
    ota_span_t root = {doc, len}, v, env, manifest, sigs;
    char text[72];
    uint8_t digest[32], hdr[12];
    uint32_t ver, slot_room;
    ota_reason_t r;

    memset(rec, 0, sizeof *rec);
    if (len < 2 || ota_json_skip(doc, doc + len, 0) != doc + len || doc[0] != '{') return OTA_R_MALFORMED;
    if (get_u32(root, "v", &ver) != 0 || ver != 1 || ota_json_get(root, "type", &v) != 0 || !ota_json_eq(v, "job"))
        return OTA_R_MALFORMED;
    if (ota_json_get(root, "execution_id", &v) != 0 || ota_json_str(v, rec->exec, sizeof rec->exec) != 0 ||
        rec->exec[0] == '\0' || !is_safe_text(rec->exec)) {
        rec->exec[0] = '\0';
        return OTA_R_MALFORMED;
    }
    /* from here on the cloud gets an answer naming the execution */
    if (ota_json_get(root, "epn", &v) != 0 || ota_json_str(v, text, sizeof text) != 0 || !is_id(text))
        return OTA_R_MALFORMED;
    if (strcmp(text, id->epn) != 0) return OTA_R_WRONG_DEVICE;
    if (get_u32(root, "stream", &ver) != 0 || ver > 0xFFFFu) return OTA_R_MALFORMED;
    rec->stream = (uint16_t)ver;
    if (get_u32(root, "package_size", &rec->package_size) != 0 || get_u32(root, "block_size", &rec->block_size) != 0 ||
        get_u32(root, "block_count", &rec->block_count) != 0 || get_hex32(root, "package_sha256", rec->package_sha256) != 0 ||
        get_u32(root, "window", &rec->window) != 0)
        return OTA_R_MALFORMED;
    if (get_u32(root, "stall_timeout", &rec->stall_s) != 0 || rec->stall_s == 0) rec->stall_s = OTA_STALL_DEFAULT_S;
    if (rec->stall_s > OTA_STALL_DEFAULT_S) rec->stall_s = OTA_STALL_DEFAULT_S;
    if (rec->package_size == 0 || rec->block_size < 256 || rec->block_size > 122880u ||
        rec->block_count != (uint32_t)(((uint64_t)rec->package_size + rec->block_size - 1) / rec->block_size))
        return OTA_R_MALFORMED;
    /* the envelope: its manifest's bytes are exactly what was signed (canonical JSON, checked above) */
    if (ota_json_get(root, "envelope", &env) != 0 || ota_json_get(env, "manifest", &manifest) != 0 ||
        manifest.p[0] != '{')
        return OTA_R_MALFORMED;
    if (ota_json_get(env, "signatures", &sigs) != 0 || sigs.p[0] != '[') return OTA_R_UNSIGNED;
    ota_sha256(manifest.p, manifest.n, digest);
    r = check_signatures(id, sigs, digest);
    if (r != OTA_R_NONE) return r;
    r = check_manifest(id, floor, manifest, rec);
    if (r != OTA_R_NONE) return r;
    /* device capabilities */
    if (ota_json_get(root, "mode", &v) != 0 || !ota_json_eq(v, "block")) return OTA_R_URL_MODE;
    if (rec->block_size > OTA_MAX_BLOCK_SIZE || rec->block_count > OTA_MAX_BLOCKS) return OTA_R_BLOCK_SIZE;
    if (rec->window == 0) rec->window = 1;
    /* package = magic(8) || N(4) || envelope(N) || payload */
    if ((uint64_t)rec->payload_len + 12u + env.n != rec->package_size) return OTA_R_MALFORMED;
    rec->payload_off = 12u + (uint32_t)env.n;
    slot_room = ota_port_slot_size(OTA_SLOT_SECONDARY) - ota_trailer_size();
    if (rec->payload_len > slot_room) return OTA_R_TOO_LARGE;
    if (rec->payload_off % OTA_WRITE_ALIGN != 0 || rec->block_size % OTA_WRITE_ALIGN != 0) return OTA_R_UNALIGNED;
    memcpy(hdr, "OTAPKG\x00\x01", 8);
    hdr[8] = (uint8_t)(env.n >> 24); hdr[9] = (uint8_t)(env.n >> 16); hdr[10] = (uint8_t)(env.n >> 8); hdr[11] = (uint8_t)env.n;
    ota_sha256_start(&rec->prefix);
    ota_sha256_update(&rec->prefix, hdr, 12);
    ota_sha256_update(&rec->prefix, env.p, env.n);
    rec->magic = OTA_RECORD_MAGIC;
    return OTA_R_NONE;
}
