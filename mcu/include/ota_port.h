/*
 * ota_port.h: the porting layer. The integrator implements these functions for a board; the
 * library calls nothing else outside itself (plus memcpy/memset/memcmp/strlen).
 *
 * Does: flash of two slots (read, erase, program), a monotonic clock, a tiny persistent key-value
 * store (a few records of at most a few hundred bytes), MQTT publish, reboot, self-test, wall time.
 * Does not: MQTT connection handling (the integrator's client connects, subscribes to the two topics
 * from ota_topic() and hands incoming messages to ota_on_message()).
 *
 * Implementations: port/host (files as flash, libmosquitto or a replay script) and port/qemu
 * (RAM as flash, semihosting for I/O).
 */
#ifndef OTA_PORT_H
#define OTA_PORT_H

#include <stddef.h>
#include <stdint.h>

typedef enum { OTA_SLOT_PRIMARY = 0, OTA_SLOT_SECONDARY = 1 } ota_slot_t;

/* Size in bytes of a slot (MCUboot's flash area, trailer included). Both slots have the same size. */
uint32_t ota_port_slot_size(ota_slot_t slot);
/* Read len bytes at off. 0 on success. */
int ota_port_flash_read(ota_slot_t slot, uint32_t off, void *buf, uint32_t len);
/* Program len bytes at off (off and len multiples of OTA_WRITE_ALIGN; the area was erased). 0 = ok. */
int ota_port_flash_write(ota_slot_t slot, uint32_t off, const void *buf, uint32_t len);
/* Erase [off, off + len), rounded out to whole sectors by the port. 0 on success. */
int ota_port_flash_erase(ota_slot_t slot, uint32_t off, uint32_t len);

/* Monotonic milliseconds (wraps after 49 days; the library compares differences only). */
uint32_t ota_port_now_ms(void);
/* Seconds since 1970-01-01 UTC if the device knows the time (SNTP, RTC), else 0 (expiry not checked). */
uint32_t ota_port_wall_time(void);

/* Persistent records: key 0..7. get returns the stored length (<= cap) or -1 if absent.
 * set must be atomic (old or new record after a power cut, never a mix). 0 on success. */
int ota_port_kv_get(uint8_t key, void *buf, uint16_t cap);
int ota_port_kv_set(uint8_t key, const void *buf, uint16_t len);

/* Publish with QoS 1, not retained. 0 when handed to the MQTT client (it retransmits until PUBACK). */
int ota_port_publish(const char *topic, const uint8_t *payload, uint16_t len);

/* Reset the MCU so MCUboot runs (the library calls it after requesting a test swap). */
void ota_port_reboot(void);
/* Application self-test run once after a trial boot of a new image. Nonzero = failed (no confirm). */
int ota_port_self_test(void);

#endif
