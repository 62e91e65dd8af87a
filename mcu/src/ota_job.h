/*
 * ota_job.h: the persisted job record, reason codes, and the job document check.
 *
 * ota_job_accept() runs, on the job document still in the MQTT buffer, everything that can be
 * decided before a byte is downloaded (docs/protocol.md 4.1 and 8, steps 1, 3 and 4 on the
 * envelope): strict canonical JSON, this device's EPN, sizes, block mode, the manifest's ECDSA P-256
 * signature by a pinned publisher key over the manifest's exact bytes, kind, app, model, expiry,
 * version floor, single uncompressed image, flash alignment and slot size. It also hashes the
 * package prefix (magic, length, envelope) that the device never stores: the envelope is taken
 * from the job document, so "the job's envelope equals the package's" holds by construction.
 * Does not: touch flash or publish (ota_agent.c does).
 */
#ifndef OTA_JOB_H
#define OTA_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "ota_codec.h"
#include "ota_crypto.h"
#include "ota_mcu.h"

/* Why an execution ended; each maps to a state and a reason sentence (ota_reason_text). */
typedef enum {
    OTA_R_NONE = 0,
    OTA_R_SUCCEEDED,
    /* REJECTED */
    OTA_R_MALFORMED, OTA_R_WRONG_DEVICE, OTA_R_UNSIGNED, OTA_R_UNTRUSTED_KEY, OTA_R_BAD_SIGNATURE,
    OTA_R_WRONG_KIND, OTA_R_WRONG_APP, OTA_R_WRONG_MODEL, OTA_R_EXPIRED, OTA_R_DOWNGRADE,
    OTA_R_AGENT_TOO_OLD, OTA_R_UNSUPPORTED_PAYLOAD, OTA_R_TOO_LARGE, OTA_R_UNALIGNED, OTA_R_PAYLOAD_HASH,
    OTA_R_IMAGE_FORMAT, OTA_R_IMAGE_VERSION, OTA_R_IMAGE_HASH, OTA_R_IMAGE_KEY, OTA_R_IMAGE_SIGNATURE,
    OTA_R_LAST_REJECTED = OTA_R_IMAGE_SIGNATURE,
    /* FAILED */
    OTA_R_URL_MODE, OTA_R_BLOCK_SIZE, OTA_R_PACKAGE_HASH, OTA_R_STALLED, OTA_R_CANCELED, OTA_R_FLASH,
    OTA_R_SELF_TEST, OTA_R_REVERTED, OTA_R_CRYPTO_MEMORY,
} ota_reason_t;

const char *ota_reason_text(ota_reason_t r);
/* "SUCCEEDED", "REJECTED" or "FAILED". */
const char *ota_reason_state(ota_reason_t r);

#define OTA_EXEC_MAX 64u
#define OTA_RECORD_MAGIC 0x4f544131u /* "OTA1" */

/* Everything about the current (or last) execution that must survive a reset. KV key OTA_KV_JOB. */
typedef struct {
    uint32_t magic;
    uint8_t state;               /* ota_state_t */
    uint8_t reason;              /* ota_reason_t once decided */
    uint16_t stream;
    char exec[OTA_EXEC_MAX + 1];
    uint32_t package_size, block_size, block_count, window, stall_s;
    uint32_t payload_off, payload_len;
    uint32_t progress;           /* blocks held when the outcome was decided (for the status) */
    ota_version_t version;
    uint8_t payload_sha256[32];
    uint8_t package_sha256[32];
    ota_sha256_t prefix;         /* SHA-256 state after magic || length || envelope */
} ota_record_t;

/* Parse and check a job document. Returns OTA_R_NONE and fills `rec` (state untouched) when the
 * download may start; otherwise the refusal, with rec->exec filled when the document named one
 * (empty when the document was not even parseable: then it is dropped, not answered). */
ota_reason_t ota_job_accept(const ota_identity_t *id, const ota_version_t *floor,
                            const char *doc, size_t len, ota_record_t *rec);

#endif
