/*
 * file_port.c: the porting layer on a POSIX host, for the MQTT device (device_main.c): each slot is
 * a file of SLOT_SIZE bytes that behaves like NOR flash (erase writes 0xFF, programming can only
 * clear bits), every write is fsynced; the key-value store is one file per key, replaced atomically
 * (write temp, fsync, rename, fsync directory); the clock is CLOCK_MONOTONIC. A process kill at any
 * point is a power cut for the library.
 */
#include "file_port.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ota_config.h"

static char g_dir[512];

static void path_of(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", g_dir, name); }

static int slot_fd(ota_slot_t slot, int flags)
{
    char p[600];
    path_of(p, sizeof p, slot == OTA_SLOT_PRIMARY ? "slot0.bin" : "slot1.bin");
    return open(p, flags);
}

static int fill(int fd, uint32_t off, uint32_t len, uint8_t byte)
{
    uint8_t buf[4096];
    memset(buf, byte, sizeof buf);
    while (len) {
        uint32_t n = len < sizeof buf ? len : (uint32_t)sizeof buf;
        if (pwrite(fd, buf, n, off) != (ssize_t)n) return -1;
        off += n;
        len -= n;
    }
    return 0;
}

int file_port_init(const char *dir)
{
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    for (int s = 0; s < 2; s++) {
        int fd = slot_fd((ota_slot_t)s, O_RDWR);
        if (fd < 0) {  /* a new device: erased flash */
            char p[600];
            path_of(p, sizeof p, s == 0 ? "slot0.bin" : "slot1.bin");
            fd = open(p, O_RDWR | O_CREAT, 0644);
            if (fd < 0 || fill(fd, 0, FILE_SLOT_SIZE, 0xFF) != 0) return -1;
        }
        close(fd);
    }
    return 0;
}

int file_port_load(ota_slot_t slot, uint8_t *buf)
{
    int fd = slot_fd(slot, O_RDONLY), ok;
    if (fd < 0) return -1;
    ok = pread(fd, buf, FILE_SLOT_SIZE, 0) == (ssize_t)FILE_SLOT_SIZE;
    close(fd);
    return ok ? 0 : -1;
}

int file_port_store(ota_slot_t slot, const uint8_t *buf)
{
    int fd = slot_fd(slot, O_RDWR), ok;
    if (fd < 0) return -1;
    ok = pwrite(fd, buf, FILE_SLOT_SIZE, 0) == (ssize_t)FILE_SLOT_SIZE && fsync(fd) == 0;
    close(fd);
    return ok ? 0 : -1;
}

uint32_t ota_port_slot_size(ota_slot_t slot) { (void)slot; return FILE_SLOT_SIZE; }

int ota_port_flash_read(ota_slot_t slot, uint32_t off, void *buf, uint32_t len)
{
    int fd, ok;
    if (off > FILE_SLOT_SIZE || len > FILE_SLOT_SIZE - off || (fd = slot_fd(slot, O_RDONLY)) < 0) return -1;
    ok = pread(fd, buf, len, off) == (ssize_t)len;
    close(fd);
    return ok ? 0 : -1;
}

int ota_port_flash_write(ota_slot_t slot, uint32_t off, const void *buf, uint32_t len)
{
    uint8_t cur[4096];
    const uint8_t *src = buf;
    int fd, ok = 1;
    if (off > FILE_SLOT_SIZE || len > FILE_SLOT_SIZE - off || off % OTA_WRITE_ALIGN || len % OTA_WRITE_ALIGN) return -1;
    if ((fd = slot_fd(slot, O_RDWR)) < 0) return -1;
    for (uint32_t done = 0; ok && done < len;) {
        uint32_t n = len - done < sizeof cur ? len - done : (uint32_t)sizeof cur;
        ok = pread(fd, cur, n, off + done) == (ssize_t)n;
        for (uint32_t i = 0; ok && i < n; i++) cur[i] &= src[done + i];  /* NOR: 1 -> 0 only */
        ok = ok && pwrite(fd, cur, n, off + done) == (ssize_t)n;
        done += n;
    }
    ok = ok && fsync(fd) == 0;
    close(fd);
    return ok ? 0 : -1;
}

int ota_port_flash_erase(ota_slot_t slot, uint32_t off, uint32_t len)
{
    uint32_t start = off / FILE_SECTOR * FILE_SECTOR, end = (off + len + FILE_SECTOR - 1u) / FILE_SECTOR * FILE_SECTOR;
    int fd, ok;
    if (end > FILE_SLOT_SIZE || (fd = slot_fd(slot, O_RDWR)) < 0) return -1;
    ok = fill(fd, start, end - start, 0xFF) == 0 && fsync(fd) == 0;
    close(fd);
    return ok ? 0 : -1;
}

uint32_t ota_port_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint32_t)((uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u);
}

uint32_t ota_port_wall_time(void) { return (uint32_t)time(NULL); }

int ota_port_kv_get(uint8_t key, void *buf, uint16_t cap)
{
    char p[600], name[16];
    int fd;
    ssize_t n;
    snprintf(name, sizeof name, "kv%u.bin", key);
    path_of(p, sizeof p, name);
    if ((fd = open(p, O_RDONLY)) < 0) return -1;
    n = read(fd, buf, cap);
    close(fd);
    return n < 0 ? -1 : (int)n;
}

int ota_port_kv_set(uint8_t key, const void *buf, uint16_t len)
{
    char p[600], tmp[610], name[16];
    int fd, ok;
    snprintf(name, sizeof name, "kv%u.bin", key);
    path_of(p, sizeof p, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0) return -1;
    ok = write(fd, buf, len) == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, p) != 0) return -1;
    if ((fd = open(g_dir, O_RDONLY)) >= 0) { (void)fsync(fd); close(fd); }
    return 0;
}
