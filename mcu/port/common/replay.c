/* replay.c: scripted device driving the library; see replay.h. */
#include "replay.h"

#include <string.h>

#include "bootsim.h"
#include "ota_crypto.h"
#include "ota_mcu.h"

static char r_epn[65], r_model[65], r_app[65];
static ota_pubkey_t r_pub;
static uint8_t r_image_key[65];
static ota_identity_t r_id = {r_epn, r_model, r_app, &r_pub, 1, r_image_key};

static void out(const char *s) { replay_write(s, (uint32_t)strlen(s)); }

int ota_port_publish(const char *topic, const uint8_t *payload, uint16_t len)
{
    out("PUB ");
    out(topic);
    out(" ");
    replay_write((const char *)payload, len);
    out("\n");
    return 0;
}

void ota_port_reboot(void) { replay_reboot_requested = 1; }

static uint32_t be32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }

static int provision(const uint8_t *d, uint32_t n)
{
    const char *s = (const char *)d;
    size_t a = strlen(s), b, c;
    if (a >= n || a > 64) return -1;
    b = strlen(s + a + 1);
    c = strlen(s + a + b + 2);
    if (b > 64 || c > 64 || a + b + c + 3 + 65 + 8 + 65 + 4 != n) return -1;
    memcpy(r_epn, s, a + 1);
    memcpy(r_model, s + a + 1, b + 1);
    memcpy(r_app, s + a + b + 2, c + 1);
    d += a + b + c + 3;
    memcpy(r_pub.point, d, 65);
    memcpy(r_pub.keyid, d + 65, 8);
    memcpy(r_image_key, d + 73, 65);
    replay_wall_time = be32(d + 138);
    return 0;
}

static void boot(void)
{
    int what = ota_bootsim(replay_slot(0), replay_slot(1), replay_slot_size());
    out(what == 1 ? "BOOT swapped\n" : what == 2 ? "BOOT reverted\n" : "BOOT\n");
    replay_reboot_requested = 0;
    (void)ota_init(&r_id);
}

int replay_run(void)
{
    uint8_t hdr[5];
    memset(replay_slot(0), 0xFF, replay_slot_size());  /* erased flash */
    memset(replay_slot(1), 0xFF, replay_slot_size());
    for (;;) {
        uint32_t n;
        if (replay_read(hdr, 5) != 0) return 2;
        n = be32(hdr + 1);
        if (n > replay_buffer_size || (n && replay_read(replay_buffer, n) != 0)) return 3;
        switch (hdr[0]) {
        case 'P': if (provision(replay_buffer, n) != 0) return 4; break;
        case 'I': boot(); break;
        case 'C': ota_connected(); break;
        case 'D': ota_disconnected(); break;
        case 'J': ota_on_message(ota_topic(OTA_TOPIC_JOB), replay_buffer, n); break;
        case 'B': ota_on_message(ota_topic(OTA_TOPIC_BLK), replay_buffer, n); break;
        case 'T':
            for (uint32_t ms = be32(replay_buffer); ms; ms -= ms < 10u ? ms : 10u) {
                replay_advance_ms(ms < 10u ? ms : 10u);
                ota_tick();
                if (replay_reboot_requested) { out("REBOOT\n"); boot(); ota_connected(); }
            }
            break;
        case 'W': {
            uint32_t off = be32(replay_buffer + 1);
            if (n < 5 || replay_buffer[0] > 1 || off > replay_slot_size() || n - 5 > replay_slot_size() - off) return 5;
            memcpy(replay_slot(replay_buffer[0]) + off, replay_buffer + 5, n - 5);
            break;
        }
        case 'H': {  /* "HASH <slot> <sha256 hex of the first len bytes>" */
            static const char hex[] = "0123456789abcdef";
            uint8_t d[32];
            char line[64];
            uint32_t len = be32(replay_buffer + 1);
            if (n != 5 || replay_buffer[0] > 1 || len > replay_slot_size()) return 5;
            ota_sha256(replay_slot(replay_buffer[0]), len, d);
            for (int i = 0; i < 32; i++) { line[2 * i] = hex[d[i] >> 4]; line[2 * i + 1] = hex[d[i] & 15]; }
            out(replay_buffer[0] ? "HASH 1 " : "HASH 0 ");
            replay_write(line, 64);
            out("\n");
            break;
        }
        case 'S': if (n != 1) return 5; replay_self_test_result = replay_buffer[0]; break;
        case 'Q': return 0;
        default: return 6;
        }
        if (replay_reboot_requested) { out("REBOOT\n"); boot(); ota_connected(); }
    }
}
