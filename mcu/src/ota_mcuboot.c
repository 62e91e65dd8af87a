/* ota_mcuboot.c: MCUboot image header, TLV walk and boot trailer; see ota_mcuboot.h. */
#include "ota_mcuboot.h"

#include <string.h>

#include "ota_config.h"

const uint8_t ota_boot_magic[OTA_BOOT_MAGIC_SZ] = {
    0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f, 0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79, 0x80,
};

static uint32_t le(const uint8_t *p, int n)
{
    uint32_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

int ota_image_header_parse(const uint8_t raw[32], ota_image_header_t *h)
{
    if (le(raw, 4) != OTA_IMAGE_MAGIC) return -1;
    h->load_addr = le(raw + 4, 4);
    h->hdr_size = (uint16_t)le(raw + 8, 2);
    h->protect_tlv_size = (uint16_t)le(raw + 10, 2);
    h->img_size = le(raw + 12, 4);
    h->flags = le(raw + 16, 4);
    h->major = raw[20];
    h->minor = raw[21];
    h->revision = (uint16_t)le(raw + 22, 2);
    h->build = le(raw + 24, 4);
    if (h->hdr_size < 32 || h->img_size > 0x7FFFFFFFu) return -1;
    return 0;
}

int ota_image_header_read(ota_slot_t slot, ota_image_header_t *h)
{
    uint8_t raw[32];
    if (ota_port_flash_read(slot, 0, raw, sizeof raw) != 0) return -1;
    return ota_image_header_parse(raw, h);
}

uint32_t ota_image_total_size(ota_slot_t slot, const ota_image_header_t *h)
{
    uint8_t info[4];
    uint32_t off = (uint32_t)h->hdr_size + h->img_size, size = ota_port_slot_size(slot);
    if (h->protect_tlv_size) {
        if (off + 4 > size || ota_port_flash_read(slot, off, info, 4) != 0) return 0;
        if (le(info, 2) != OTA_TLV_PROT_INFO_MAGIC || le(info + 2, 2) != h->protect_tlv_size) return 0;
        off += h->protect_tlv_size;
    }
    if (off + 4 > size || ota_port_flash_read(slot, off, info, 4) != 0) return 0;
    if (le(info, 2) != OTA_TLV_INFO_MAGIC || le(info + 2, 2) < 4) return 0;
    return off + le(info + 2, 2);
}

uint32_t ota_trailer_magic_off(uint32_t size) { return size - OTA_BOOT_MAGIC_SZ; }
uint32_t ota_trailer_image_ok_off(uint32_t size) { return ota_trailer_magic_off(size) - OTA_BOOT_MAX_ALIGN; }
uint32_t ota_trailer_copy_done_off(uint32_t size) { return ota_trailer_image_ok_off(size) - OTA_BOOT_MAX_ALIGN; }
/* swap_info, copy_done, image_ok (one BOOT_MAX_ALIGN unit each) and the magic; MCUboot's swap
 * status area in front of them is reserved too by sizing slots with room to spare (docs/mcu.md). */
uint32_t ota_trailer_size(void) { return 3u * OTA_BOOT_MAX_ALIGN + OTA_BOOT_MAGIC_SZ; }

int ota_boot_request_test_swap(void)
{
    /* the trailer is still erased: the whole slot was erased when the download started, and the
     * image ends before the trailer (erasing here could take the image's last sector with it) */
    uint32_t size = ota_port_slot_size(OTA_SLOT_SECONDARY);
    return ota_port_flash_write(OTA_SLOT_SECONDARY, ota_trailer_magic_off(size), ota_boot_magic, OTA_BOOT_MAGIC_SZ);
}

int ota_boot_is_trial(void)
{
    uint32_t size = ota_port_slot_size(OTA_SLOT_PRIMARY);
    uint8_t magic[OTA_BOOT_MAGIC_SZ], ok[1];
    if (ota_port_flash_read(OTA_SLOT_PRIMARY, ota_trailer_magic_off(size), magic, sizeof magic) != 0) return 0;
    if (memcmp(magic, ota_boot_magic, sizeof magic) != 0) return 0;
    if (ota_port_flash_read(OTA_SLOT_PRIMARY, ota_trailer_image_ok_off(size), ok, 1) != 0) return 0;
    return ok[0] != 0x01;
}

int ota_boot_confirm(void)
{
    uint8_t unit[OTA_BOOT_MAX_ALIGN];
    uint32_t size = ota_port_slot_size(OTA_SLOT_PRIMARY);
    memset(unit, 0xFF, sizeof unit);
    unit[0] = 0x01;
    return ota_port_flash_write(OTA_SLOT_PRIMARY, ota_trailer_image_ok_off(size), unit, sizeof unit);
}
