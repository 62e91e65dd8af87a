/* bootsim.c: MCUboot's swap-at-reset, emulated on memory; see bootsim.h. */
#include "bootsim.h"

#include <string.h>

#include "ota_mcuboot.h"

static void swap_bodies(uint8_t *a, uint8_t *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) { uint8_t t = a[i]; a[i] = b[i]; b[i] = t; }
}

int ota_bootsim(uint8_t *primary, uint8_t *secondary, uint32_t size)
{
    uint32_t trailer = size - ota_trailer_size();
    int trial = memcmp(primary + ota_trailer_magic_off(size), ota_boot_magic, OTA_BOOT_MAGIC_SZ) == 0 &&
                primary[ota_trailer_copy_done_off(size)] == 0x01 && primary[ota_trailer_image_ok_off(size)] != 0x01;
    if (trial) {  /* not confirmed before this reset: put the previous image back */
        swap_bodies(primary, secondary, trailer);
        memset(primary + trailer, 0xFF, ota_trailer_size());
        memset(secondary + trailer, 0xFF, ota_trailer_size());
        return 2;
    }
    if (memcmp(secondary + ota_trailer_magic_off(size), ota_boot_magic, OTA_BOOT_MAGIC_SZ) == 0) {
        swap_bodies(primary, secondary, trailer);
        memset(secondary + trailer, 0xFF, ota_trailer_size());
        memset(primary + trailer, 0xFF, ota_trailer_size());
        memcpy(primary + ota_trailer_magic_off(size), ota_boot_magic, OTA_BOOT_MAGIC_SZ);
        primary[ota_trailer_copy_done_off(size)] = 0x01;
        return 1;
    }
    return 0;
}
