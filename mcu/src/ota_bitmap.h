/*
 * ota_bitmap.h: the received-block bitmap and the two messages built from it: the cumulative ack
 * {"b","n","s","x"} and the repair request {"b","o","s","x"} (docs/protocol.md 4.4, 4.5).
 *
 * Bit k of byte j (LSB first) is block 8j+k. Does not: persist anything (ota_agent.c does).
 */
#ifndef OTA_BITMAP_H
#define OTA_BITMAP_H

#include <stddef.h>
#include <stdint.h>

#include "ota_codec.h"

int ota_bm_get(const uint8_t *bm, uint32_t i);
void ota_bm_set(uint8_t *bm, uint32_t i);
/* Number of leading held blocks (the ack's n). */
uint32_t ota_bm_contiguous(const uint8_t *bm, uint32_t count);
uint32_t ota_bm_held(const uint8_t *bm, uint32_t count);
/* {"b":...,"n":n,"s":stream,"x":"exec"}: held blocks beyond n, trailing zero bytes stripped. */
void ota_bm_ack(ota_writer_t *w, const uint8_t *bm, uint32_t count, const char *exec, uint16_t stream);
/* {"b":...,"o":o,"s":stream,"x":"exec"}: every missing block from the first missing one.
 * Returns 0 if nothing is missing (nothing written). */
int ota_bm_request(ota_writer_t *w, const uint8_t *bm, uint32_t count, const char *exec, uint16_t stream);

#endif
