/*
 * main.c: the QEMU (mps2-an385, Cortex-M3) firmware: the replay device with the script read from
 * the host file "replay.bin" (QEMU's working directory) through semihosting and its output on
 * QEMU's stdout; exits QEMU with the replay's code. Also reports the measured stack high-water mark.
 */
#include <stdint.h>

#include "replay.h"
#include "semihost.h"

uint8_t replay_buffer[16384];
const uint32_t replay_buffer_size = sizeof replay_buffer;
static int in_fd, out_fd;

int replay_read(void *buf, uint32_t n) { return sh_read(in_fd, buf, n) == 0 ? 0 : -1; }
void replay_write(const char *s, uint32_t n) { (void)sh_write(out_fd, s, n); }

extern uint32_t __stack_bottom, __stack_top;

/* Paint the unused stack so its high-water mark can be measured afterwards. */
static void __attribute__((noinline)) paint_stack(void)
{
    uint32_t *p = &__stack_bottom;
    uintptr_t limit = (uintptr_t)__builtin_frame_address(0) - 256u;
    while ((uintptr_t)p < limit) *p++ = 0xA5A5A5A5u;
}

static uint32_t stack_used(void)
{
    const uint32_t *p = &__stack_bottom;
    while (p < &__stack_top && *p == 0xA5A5A5A5u) p++;
    return (uint32_t)((const char *)&__stack_top - (const char *)p);
}

static void put_u32(uint32_t v)
{
    char t[12];
    int i = 11;
    t[i] = '\n';
    do { t[--i] = (char)('0' + v % 10u); v /= 10u; } while (v);
    replay_write(t + i, (uint32_t)(12 - i));
}

int main(void)
{
    int rc;
    paint_stack();
    out_fd = sh_open(":tt", 4);
    in_fd = sh_open("replay.bin", 1);  /* mode 1 = "rb" */
    if (in_fd < 0) { replay_write("ERROR no replay.bin\n", 20); sh_exit(10); }
    rc = replay_run();
    replay_write("STACK ", 6);
    put_u32(stack_used());
    sh_exit(rc);
}
