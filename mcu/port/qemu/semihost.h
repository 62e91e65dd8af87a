/*
 * semihost.h: ARM semihosting calls (bkpt 0xAB) used by the QEMU firmware for its only I/O:
 * reading the replay script from a host file and writing output lines to QEMU's stdout.
 */
#ifndef OTA_SEMIHOST_H
#define OTA_SEMIHOST_H

#include <stdint.h>

int sh_open(const char *name, int mode);
int sh_read(int fd, void *buf, uint32_t n);   /* bytes NOT read (0 = all) */
int sh_write(int fd, const void *buf, uint32_t n);
void sh_exit(int code) __attribute__((noreturn));

#endif
