/*
 * ota_mcu.h: public API of the OTA MCU library, a device agent for Cortex-M class MCUs.
 *
 * Speaks docs/protocol.md (block mode): parses job documents (canonical JSON, parsed in place),
 * checks and writes block frames straight into MCUboot's secondary slot, keeps and persists the
 * block bitmap, sends acks and repair requests, verifies the whole image streaming from flash
 * (package SHA-256, payload SHA-256 pinned by the ECDSA-signed manifest, MCUboot hash and signature
 * TLVs), requests a test swap from MCUboot, confirms after a successful trial boot and reports.
 *
 * Not supported: URL mode, compressed payloads, delta packages (designed in docs/mcu.md), commands.
 * No heap, no OS, no floating point. Single-threaded: call everything from one task or loop.
 */
#ifndef OTA_MCU_H
#define OTA_MCU_H

#include <stddef.h>
#include <stdint.h>

#include "ota_config.h"
#include "ota_port.h"

/* A publisher key trusted for package manifests: the uncompressed P-256 point (0x04 || X || Y) and
 * its key id (first 8 bytes of SHA-256 of the SubjectPublicKeyInfo DER, i.e. 16 hex chars). */
typedef struct {
    uint8_t point[65];
    uint8_t keyid[8];
} ota_pubkey_t;

/* Identity and trust anchors, provisioned at the factory; must outlive the library. */
typedef struct {
    const char *epn;                 /* EPN ID = MQTT client id, ^[A-Za-z0-9_-]{1,64}$ */
    const char *model;               /* model number, listed in manifests' "models" */
    const char *app;                 /* app name of this firmware in inventories and manifests */
    const ota_pubkey_t *publishers;  /* trusted manifest signers */
    uint8_t publisher_count;
    const uint8_t *image_key;        /* 65-byte P-256 point MCUboot verifies images with */
} ota_identity_t;

typedef enum { OTA_TOPIC_JOB = 0, OTA_TOPIC_BLK = 1 } ota_topic_t;

/* Boot: load persisted state, finish what a reset interrupted (after a swap: self-test and confirm,
 * or report the bootloader's revert). Call once per boot, before connecting. 0 on success. */
int ota_init(const ota_identity_t *identity);

/* The topic to subscribe to (QoS 1) for `which`, NUL-terminated; valid after ota_init(). */
const char *ota_topic(ota_topic_t which);

/* After every (re)connect and subscribe: publishes the inventory and asks for missing blocks. */
void ota_connected(void);

/* Every incoming message (job or blk topic). The payload is only read during the call. */
void ota_on_message(const char *topic, const uint8_t *payload, size_t len);

/* When the MQTT connection is lost (stall time stops counting; nothing is published). */
void ota_disconnected(void);

/* Call every few milliseconds (at least every 50 ms): acks, repair requests, stall, verification,
 * swap request and reboot all happen here. */
void ota_tick(void);

/* States, for the integrator's diagnostics. */
typedef enum {
    OTA_IDLE = 0, OTA_DOWNLOADING = 1, OTA_VERIFYING = 2, OTA_SWAPPING = 3, OTA_REPORTING = 4
} ota_state_t;
ota_state_t ota_state(void);
/* Version of the running image (from its MCUboot header), packed major<<24 | minor<<16 | revision. */
uint32_t ota_running_version(void);

#endif
