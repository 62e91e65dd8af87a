/*
 * replay.h: a scripted device for tests: reads records (provisioning, boot, MQTT messages, clock
 * steps, flash preloads) from an input stream and drives the library with them; every publish is
 * written out as one line "PUB <topic> <payload>". Shared by the host build and the QEMU firmware,
 * which differ only in the I/O and storage functions below.
 *
 * Record: u8 type, u32 big-endian length, `length` bytes. Types: 'P' provision (epn\0 model\0 app\0
 * publisher point[65] keyid[8] image point[65] wall_time u32), 'I' boot (bootsim, then ota_init), 'C'
 * connected, 'D' disconnected, 'J' message on the job topic, 'B' message on the blk topic, 'T' advance
 * the clock by u32 ms (ota_tick every 10 ms), 'W' preload flash (u8 slot, u32 offset, bytes), 'H' print the SHA-256 of a slot's first
 * u32 bytes (u8 slot, u32 length), 'S' set the self-test result (u8, 0 = pass), 'Q' quit.
 */
#ifndef OTA_REPLAY_H
#define OTA_REPLAY_H

#include <stdint.h>

/* Provided by the port. */
int replay_read(void *buf, uint32_t n);          /* 0 when n bytes were read */
void replay_write(const char *s, uint32_t n);
uint8_t *replay_slot(int slot);                  /* the emulated flash of a slot */
uint32_t replay_slot_size(void);
void replay_advance_ms(uint32_t ms);             /* the port's virtual clock */
extern uint32_t replay_wall_time;
extern int replay_reboot_requested;
extern int replay_self_test_result;            /* what ota_port_self_test() answers */
extern uint8_t replay_buffer[];                  /* holds one record */
extern const uint32_t replay_buffer_size;

/* Runs the script; returns the exit code (0 = script ran to 'Q'). */
int replay_run(void);

#endif
