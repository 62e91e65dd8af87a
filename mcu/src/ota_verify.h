/*
 * ota_verify.h: verification of the downloaded image, streaming from the secondary slot.
 *
 * One pass over the slot in OTA_READ_CHUNK reads feeds three SHA-256 states: the package (resumed
 * from the prefix state saved at job time, compared with the job's package_sha256: a mismatch is a
 * corrupted transfer, FAILED), the payload (compared with the signed manifest's payload.sha256:
 * REJECTED) and the MCUboot image (header + body + protected TLVs, compared with the SHA256 TLV).
 * Then the image's key-hash TLV is checked against the pinned image key and its ECDSA-P256 TLV is
 * verified, and the image header version must equal the manifest version.
 * Does not: write flash or decide what happens next.
 */
#ifndef OTA_VERIFY_H
#define OTA_VERIFY_H

#include "ota_job.h"

ota_reason_t ota_verify_slot(const ota_record_t *rec, const uint8_t image_key[65]);

#endif
