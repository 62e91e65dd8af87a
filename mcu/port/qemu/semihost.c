/* semihost.c: ARM semihosting over bkpt 0xAB for Cortex-M; see semihost.h. */
#include "semihost.h"

#include <string.h>

static int call(int op, void *args)
{
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = args;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

int sh_open(const char *name, int mode)
{
    uint32_t a[3] = {(uint32_t)name, (uint32_t)mode, (uint32_t)strlen(name)};
    return call(0x01, a);
}

int sh_read(int fd, void *buf, uint32_t n)
{
    uint32_t a[3] = {(uint32_t)fd, (uint32_t)buf, n};
    return call(0x06, a);
}

int sh_write(int fd, const void *buf, uint32_t n)
{
    uint32_t a[3] = {(uint32_t)fd, (uint32_t)buf, n};
    return call(0x05, a);
}

void sh_exit(int code)
{
    /* SYS_EXIT_EXTENDED: ADP_Stopped_ApplicationExit with an exit code */
    uint32_t a[2] = {0x20026u, (uint32_t)code};
    call(0x20, a);
    for (;;) {}
}
