/*
 * bootsim.h: what MCUboot does at reset in swap mode, played on two in-memory slot images so the
 * host and QEMU builds can "reboot" into a new image. Not part of the library; never on a device
 * (there MCUboot itself runs).
 *
 * Does: revert an unconfirmed trial image (primary trailer magic + copy_done set, image_ok unset);
 * otherwise, when the secondary trailer carries the magic, swap the slots and mark the primary as a
 * trial (magic + copy_done). Does not: check image signatures (MCUboot would; the library already
 * did before asking for the swap), model swap status for power cuts during the swap.
 */
#ifndef OTA_BOOTSIM_H
#define OTA_BOOTSIM_H

#include <stdint.h>

/* Returns 0 nothing done, 1 swapped in a new image for a trial, 2 reverted an unconfirmed trial. */
int ota_bootsim(uint8_t *primary, uint8_t *secondary, uint32_t size);

#endif
