/*
 * ram_port.c: the porting layer over RAM, for the replay device (host tests and QEMU): slots are
 * byte arrays that behave like NOR flash (erase sets 0xFF, programming can only clear bits), the
 * key-value store is a small table, the clock is virtual and moved by the script. On a real MCU these
 * functions wrap the flash controller, a KV in a reserved flash page and SysTick.
 */
#include <string.h>

#include "ota_config.h"
#include "ota_port.h"
#include "replay.h"

#ifndef RAM_SLOT_SIZE
#define RAM_SLOT_SIZE (128u * 1024u)
#endif
#define RAM_SECTOR 4096u
#define KV_KEYS 8
#define KV_CAP 512u

static uint8_t slots[2][RAM_SLOT_SIZE];
static uint8_t kv[KV_KEYS][KV_CAP];
static uint16_t kv_len[KV_KEYS];
static uint8_t kv_set[KV_KEYS];
static uint32_t now_ms;
uint32_t replay_wall_time;
int replay_reboot_requested;

uint8_t *replay_slot(int slot) { return slots[slot ? 1 : 0]; }
uint32_t replay_slot_size(void) { return RAM_SLOT_SIZE; }
void replay_advance_ms(uint32_t ms) { now_ms += ms; }

uint32_t ota_port_slot_size(ota_slot_t slot) { (void)slot; return RAM_SLOT_SIZE; }

int ota_port_flash_read(ota_slot_t slot, uint32_t off, void *buf, uint32_t len)
{
    if (off > RAM_SLOT_SIZE || len > RAM_SLOT_SIZE - off) return -1;
    memcpy(buf, slots[slot] + off, len);
    return 0;
}

int ota_port_flash_write(ota_slot_t slot, uint32_t off, const void *buf, uint32_t len)
{
    const uint8_t *src = buf;
    if (off > RAM_SLOT_SIZE || len > RAM_SLOT_SIZE - off || off % OTA_WRITE_ALIGN || len % OTA_WRITE_ALIGN) return -1;
    for (uint32_t i = 0; i < len; i++) slots[slot][off + i] &= src[i];  /* NOR: 1 -> 0 only */
    return 0;
}

int ota_port_flash_erase(ota_slot_t slot, uint32_t off, uint32_t len)
{
    uint32_t start = off / RAM_SECTOR * RAM_SECTOR, end = (off + len + RAM_SECTOR - 1u) / RAM_SECTOR * RAM_SECTOR;
    if (end > RAM_SLOT_SIZE) return -1;
    memset(slots[slot] + start, 0xFF, end - start);
    return 0;
}

uint32_t ota_port_now_ms(void) { return now_ms; }
uint32_t ota_port_wall_time(void) { return replay_wall_time; }

int ota_port_kv_get(uint8_t key, void *buf, uint16_t cap)
{
    if (key >= KV_KEYS || !kv_set[key]) return -1;
    uint16_t n = kv_len[key] < cap ? kv_len[key] : cap;
    memcpy(buf, kv[key], n);
    return n;
}

int ota_port_kv_set(uint8_t key, const void *buf, uint16_t len)
{
    if (key >= KV_KEYS || len > KV_CAP) return -1;
    memcpy(kv[key], buf, len);
    kv_len[key] = len;
    kv_set[key] = 1;
    return 0;
}

int replay_self_test_result;
int ota_port_self_test(void) { return replay_self_test_result; }
