/*
 * stub_main.c: the footprint image. Links the library against a port whose functions do nothing
 * observable (volatile sinks), and calls every public entry point, so the linker keeps exactly
 * what an integrator's firmware would keep. Never run; only measured (tools/footprint.py).
 */
#include "ota_mcu.h"

static volatile uint32_t sink;
static const ota_pubkey_t pub = {{4}, {0}};
static const uint8_t image_key[65] = {4};
static const ota_identity_t id = {"dev", "m", "fw", &pub, 1, image_key};
static uint8_t msg[13 + 256];

uint32_t ota_port_slot_size(ota_slot_t slot) { return 0x40000u + sink + (uint32_t)slot; }
int ota_port_flash_read(ota_slot_t s, uint32_t o, void *b, uint32_t n) { sink = (uint32_t)s + o + n + *(uint8_t *)b; return 0; }
int ota_port_flash_write(ota_slot_t s, uint32_t o, const void *b, uint32_t n) { sink = (uint32_t)s + o + n + *(const uint8_t *)b; return 0; }
int ota_port_flash_erase(ota_slot_t s, uint32_t o, uint32_t n) { sink = (uint32_t)s + o + n; return 0; }
uint32_t ota_port_now_ms(void) { return sink; }
uint32_t ota_port_wall_time(void) { return sink; }
int ota_port_kv_get(uint8_t k, void *b, uint16_t c) { sink = k + c + *(uint8_t *)b; return -1; }
int ota_port_kv_set(uint8_t k, const void *b, uint16_t n) { sink = k + n + *(const uint8_t *)b; return 0; }
int ota_port_publish(const char *t, const uint8_t *p, uint16_t n) { sink = (uint32_t)*t + *p + n; return 0; }
void ota_port_reboot(void) { sink = 1; }
int ota_port_self_test(void) { return (int)sink; }

int main(void)
{
    ota_init(&id);
    ota_connected();
    ota_on_message(ota_topic(OTA_TOPIC_JOB), msg, sink);
    ota_on_message(ota_topic(OTA_TOPIC_BLK), msg, sink);
    ota_tick();
    ota_disconnected();
    return (int)ota_state() + (int)ota_running_version();
}
