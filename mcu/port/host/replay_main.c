/* replay_main.c: the replay device on the host (stdin script in, stdout lines out); see replay.h. */
#include <stdio.h>

#include "replay.h"

uint8_t replay_buffer[16384];
const uint32_t replay_buffer_size = sizeof replay_buffer;

int replay_read(void *buf, uint32_t n) { return fread(buf, 1, n, stdin) == n ? 0 : -1; }
void replay_write(const char *s, uint32_t n) { fwrite(s, 1, n, stdout); }

int main(void)
{
    int rc = replay_run();
    fflush(stdout);
    return rc;
}
