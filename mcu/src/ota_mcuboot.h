/*
 * ota_mcuboot.h: MCUboot's image format and boot trailer, as far as the device needs them.
 *
 * Does: parse the 32-byte image header (little-endian), walk the TLV area, and write the trailer
 * fields that ask MCUboot for a test swap (magic in the secondary slot) and that confirm a running
 * image (image_ok in the primary slot), laid out for BOOT_MAX_ALIGN = OTA_BOOT_MAX_ALIGN.
 * Does not: verify anything (ota_verify.c does), swap images (MCUboot does; port/common/bootsim.c
 * plays it on the host and in QEMU).
 */
#ifndef OTA_MCUBOOT_H
#define OTA_MCUBOOT_H

#include <stdint.h>

#include "ota_port.h"

#define OTA_IMAGE_MAGIC 0x96f3b83du
#define OTA_TLV_INFO_MAGIC 0x6907u
#define OTA_TLV_PROT_INFO_MAGIC 0x6908u
#define OTA_TLV_KEYHASH 0x01u
#define OTA_TLV_SHA256 0x10u
#define OTA_TLV_ECDSA_SIG 0x22u
#define OTA_BOOT_MAGIC_SZ 16u

typedef struct {
    uint32_t load_addr;
    uint16_t hdr_size, protect_tlv_size;
    uint32_t img_size, flags;
    uint8_t major, minor;
    uint16_t revision;
    uint32_t build;
} ota_image_header_t;

extern const uint8_t ota_boot_magic[OTA_BOOT_MAGIC_SZ];

/* Parse a header from 32 bytes; 0 if the magic is right and sizes are sane. */
int ota_image_header_parse(const uint8_t raw[32], ota_image_header_t *h);
/* Read and parse the header at the start of a slot. */
int ota_image_header_read(ota_slot_t slot, ota_image_header_t *h);
/* Total image size in flash: header + body + protected TLVs + TLV area (from the TLV info). 0 if bad. */
uint32_t ota_image_total_size(ota_slot_t slot, const ota_image_header_t *h);

/* Trailer offsets (from the slot start) for a slot of `size` bytes. */
uint32_t ota_trailer_magic_off(uint32_t size);
uint32_t ota_trailer_image_ok_off(uint32_t size);
uint32_t ota_trailer_copy_done_off(uint32_t size);
/* Bytes reserved at the end of a slot for the trailer (an image must end before it). */
uint32_t ota_trailer_size(void);

/* Ask MCUboot for a test (non-permanent) upgrade from the secondary slot: write the magic into
 * its (erased) trailer. 0 on success. */
int ota_boot_request_test_swap(void);
/* 1 if the primary slot runs a swapped-in image not yet confirmed (magic set, image_ok unset). */
int ota_boot_is_trial(void);
/* Confirm the running image: image_ok = 1 in the primary trailer. 0 on success. */
int ota_boot_confirm(void);

#endif
