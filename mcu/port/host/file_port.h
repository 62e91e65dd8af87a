/*
 * file_port.h: host porting layer with files as flash and as the key-value store (file_port.c).
 * The slot size and sector are those of a typical Cortex-M part with 2 x 256 KiB image slots.
 */
#ifndef OTA_FILE_PORT_H
#define OTA_FILE_PORT_H

#include <stdint.h>

#include "ota_port.h"

#define FILE_SLOT_SIZE (256u * 1024u)
#define FILE_SECTOR 4096u

/* Use directory `dir` (slot0.bin, slot1.bin, kv*.bin); creates erased slots. 0 on success. */
int file_port_init(const char *dir);
/* Whole-slot access for the boot emulation (buf holds FILE_SLOT_SIZE bytes). */
int file_port_load(ota_slot_t slot, uint8_t *buf);
int file_port_store(ota_slot_t slot, const uint8_t *buf);

#endif
