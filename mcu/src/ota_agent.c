/*
 * ota_agent.c: the device state machine behind ota_mcu.h.
 *
 * IDLE -> DOWNLOADING -> VERIFYING -> SWAPPING (test swap requested, reboot) -> REPORTING -> IDLE,
 * with REPORTING reached directly on any refusal or failure. The record (ota_job.h) is persisted
 * at every transition, before the work of the new state; the bitmap is persisted before every ack,
 * so an acknowledged block survives a power cut. Does not: parse job documents (ota_job.c), verify
 * images (ota_verify.c), or know the transport (ota_port_publish).
 */
#include <string.h>

#include "ota_bitmap.h"
#include "ota_frame.h"
#include "ota_job.h"
#include "ota_json.h"
#include "ota_mcu.h"
#include "ota_mcuboot.h"
#include "ota_verify.h"

enum { KV_RECORD = 0, KV_BITMAP = 1, KV_SEQ = 2, KV_FLOOR = 3 };

/* The largest message is an ack or get with a full bitmap in base64 plus ~160 bytes of fields. */
typedef char ota_tx_buffer_fits_a_full_bitmap[(OTA_TX_BUFFER >= (OTA_MAX_BLOCKS / 8u + 2u) / 3u * 4u + 160u) ? 1 : -1];

static const ota_identity_t *g_id;
static ota_record_t g_rec;
static uint8_t g_bm[OTA_MAX_BLOCKS / 8u];
static char g_tx[OTA_TX_BUFFER];
static char g_topic[80], g_sub_job[80], g_sub_blk[80];  /* publish scratch; the two subscriptions */
static ota_version_t g_floor, g_running;
static int g_running_valid, g_connected;
static uint64_t g_seq;
/* download timing (not persisted: a reset restarts the clocks) */
static uint32_t g_new_since_ack, g_last_block_ms, g_last_progress_ms, g_last_get_ms, g_get_interval;
static int g_ack_due;

static const char *topic(const char *leaf)
{
    ota_writer_t w;
    ota_w_init(&w, g_topic, sizeof g_topic);
    ota_w_raw(&w, "ota/");
    ota_w_raw(&w, g_id->epn);
    ota_w_raw(&w, "/");
    ota_w_raw(&w, leaf);
    return g_topic;
}

const char *ota_topic(ota_topic_t which) { return which == OTA_TOPIC_JOB ? g_sub_job : g_sub_blk; }
ota_state_t ota_state(void) { return (ota_state_t)g_rec.state; }
uint32_t ota_running_version(void)
{
    return g_running_valid ? (g_running.major << 24) | (g_running.minor << 16) | g_running.patch : 0;
}

static void save_record(void) { (void)ota_port_kv_set(KV_RECORD, &g_rec, sizeof g_rec); }
static void save_bitmap(void) { (void)ota_port_kv_set(KV_BITMAP, g_bm, (uint16_t)((g_rec.block_count + 7u) / 8u)); }

static void publish(const char *leaf, const ota_writer_t *w)
{
    if (w->ok && g_connected) (void)ota_port_publish(topic(leaf), (const uint8_t *)w->buf, (uint16_t)w->len);
}

/* Status (docs/protocol.md 4.7); seq is persisted before it is used. */
static void send_status(const char *state, const char *step, const char *reason, uint32_t progress)
{
    ota_writer_t w;
    g_seq++;
    (void)ota_port_kv_set(KV_SEQ, &g_seq, sizeof g_seq);
    ota_w_init(&w, g_tx, sizeof g_tx);
    ota_w_raw(&w, "{\"progress\":");
    ota_w_u32(&w, progress);
    if (reason && reason[0]) { ota_w_raw(&w, ",\"reason\":"); ota_w_qstr(&w, reason); }
    ota_w_raw(&w, ",\"seq\":");
    ota_w_u64(&w, g_seq);
    ota_w_raw(&w, ",\"state\":");
    ota_w_qstr(&w, state);
    if (step) { ota_w_raw(&w, ",\"step\":"); ota_w_qstr(&w, step); }
    ota_w_raw(&w, ",\"type\":\"status\",\"v\":1,\"x\":");
    ota_w_qstr(&w, g_rec.exec);
    ota_w_raw(&w, "}");
    publish("status", &w);
}

static void send_inventory(void)
{
    ota_writer_t w;
    ota_w_init(&w, g_tx, sizeof g_tx);
    ota_w_raw(&w, "{\"agent_version\":\"" OTA_AGENT_VERSION "\",\"apps\":{");
    if (g_running_valid) {
        ota_w_qstr(&w, g_id->app);
        ota_w_raw(&w, ":\"");
        ota_w_version(&w, g_running.major, g_running.minor, g_running.patch);
        ota_w_raw(&w, "\"");
    }
    ota_w_raw(&w, "},\"model\":");
    ota_w_qstr(&w, g_id->model);
    ota_w_raw(&w, ",\"type\":\"inventory\",\"v\":1}");
    publish("status", &w);
}

static uint32_t held(void) { return ota_bm_held(g_bm, g_rec.block_count); }

static void send_ack(void)
{
    ota_writer_t w;
    save_bitmap();  /* durable before acknowledged */
    ota_w_init(&w, g_tx, sizeof g_tx);
    ota_bm_ack(&w, g_bm, g_rec.block_count, g_rec.exec, g_rec.stream);
    publish("ack", &w);
    g_new_since_ack = 0;
    g_ack_due = 0;
}

static void send_get(void)
{
    ota_writer_t w;
    ota_w_init(&w, g_tx, sizeof g_tx);
    if (ota_bm_request(&w, g_bm, g_rec.block_count, g_rec.exec, g_rec.stream)) publish("get", &w);
    g_last_get_ms = ota_port_now_ms();
}

/* Publish the decided outcome and go idle (or wait for a connection in REPORTING). */
static void flush_report(void)
{
    if (g_rec.state != OTA_REPORTING || !g_connected) return;
    send_status(ota_reason_state((ota_reason_t)g_rec.reason), NULL, ota_reason_text((ota_reason_t)g_rec.reason),
                g_rec.progress);
    g_rec.state = OTA_IDLE;
    save_record();
    send_inventory();
}

static void finish(ota_reason_t reason)
{
    if (g_rec.state == OTA_DOWNLOADING) g_rec.progress = held();
    g_rec.reason = (uint8_t)reason;
    g_rec.state = OTA_REPORTING;
    save_record();
    flush_report();
}

static void load_running(void)
{
    ota_image_header_t h;
    g_running_valid = ota_image_header_read(OTA_SLOT_PRIMARY, &h) == 0;
    if (g_running_valid) { g_running.major = h.major; g_running.minor = h.minor; g_running.patch = h.revision; }
}

/* After the reset that followed a swap request: did MCUboot boot the new image, and does it work? */
static void resume_after_swap(void)
{
    if (!g_running_valid || ota_version_cmp(&g_running, &g_rec.version) != 0) { finish(OTA_R_REVERTED); return; }
    if (ota_boot_is_trial()) {
        if (ota_port_self_test() != 0) { finish(OTA_R_SELF_TEST); return; }
        if (ota_boot_confirm() != 0) { finish(OTA_R_FLASH); return; }
    }
    g_floor = g_rec.version;
    (void)ota_port_kv_set(KV_FLOOR, &g_floor, sizeof g_floor);
    finish(OTA_R_SUCCEEDED);
}

int ota_init(const ota_identity_t *identity)
{
    g_id = identity;
    g_connected = 0;
    memcpy(g_sub_job, topic("job"), sizeof g_sub_job);
    memcpy(g_sub_blk, topic("blk"), sizeof g_sub_blk);
    if (ota_port_kv_get(KV_SEQ, &g_seq, sizeof g_seq) != (int)sizeof g_seq) g_seq = 0;
    if (ota_port_kv_get(KV_FLOOR, &g_floor, sizeof g_floor) != (int)sizeof g_floor) memset(&g_floor, 0, sizeof g_floor);
    if (ota_port_kv_get(KV_RECORD, &g_rec, sizeof g_rec) != (int)sizeof g_rec || g_rec.magic != OTA_RECORD_MAGIC ||
        g_rec.block_count > OTA_MAX_BLOCKS)
        memset(&g_rec, 0, sizeof g_rec);
    load_running();
    /* the running, confirmed image is a floor too (never install below what runs) */
    if (g_running_valid && !ota_boot_is_trial() && ota_version_cmp(&g_running, &g_floor) > 0) g_floor = g_running;
    memset(g_bm, 0, sizeof g_bm);
    if (g_rec.state == OTA_DOWNLOADING &&
        ota_port_kv_get(KV_BITMAP, g_bm, (uint16_t)((g_rec.block_count + 7u) / 8u)) < 0)
        memset(g_bm, 0, sizeof g_bm);
    if (g_rec.state == OTA_SWAPPING) resume_after_swap();
    g_last_progress_ms = g_last_block_ms = g_last_get_ms = ota_port_now_ms();
    g_get_interval = OTA_GET_FIRST_MS;
    g_new_since_ack = 0;
    g_ack_due = 0;
    return 0;
}

void ota_connected(void)
{
    g_connected = 1;
    send_inventory();
    if (g_rec.state == OTA_DOWNLOADING) {
        g_last_progress_ms = ota_port_now_ms();  /* time offline does not count */
        g_get_interval = OTA_GET_FIRST_MS;
        send_get();
    }
    flush_report();
}

void ota_disconnected(void) { g_connected = 0; }

static void start_download(void)
{
    g_rec.state = OTA_DOWNLOADING;
    if (ota_port_flash_erase(OTA_SLOT_SECONDARY, 0, ota_port_slot_size(OTA_SLOT_SECONDARY)) != 0) {
        finish(OTA_R_FLASH);
        return;
    }
    memset(g_bm, 0, sizeof g_bm);
    save_bitmap();
    save_record();
    send_status("IN_PROGRESS", "DOWNLOADING", NULL, 0);
    g_new_since_ack = 0;
    g_ack_due = 0;
    g_last_progress_ms = g_last_block_ms = ota_port_now_ms();
    g_get_interval = OTA_GET_FIRST_MS;
    send_get();  /* asks for every block: the cloud's signal to start */
}

static void on_job(const char *doc, size_t len)
{
    ota_span_t root = {doc, len}, v;
    char exec[OTA_EXEC_MAX + 1];
    ota_record_t cand;
    ota_reason_t r;

    if (len < 2 || ota_json_skip(doc, doc + len, 0) != doc + len || doc[0] != '{') return;
    if (ota_json_get(root, "type", &v) != 0) return;
    if (ota_json_eq(v, "cancel")) {
        if (ota_json_get(root, "execution_id", &v) == 0 && ota_json_str(v, exec, sizeof exec) == 0 &&
            strcmp(exec, g_rec.exec) == 0 && (g_rec.state == OTA_DOWNLOADING || g_rec.state == OTA_VERIFYING))
            finish(OTA_R_CANCELED);
        return;
    }
    if (!ota_json_eq(v, "job") || ota_json_get(root, "execution_id", &v) != 0 ||
        ota_json_str(v, exec, sizeof exec) != 0)
        return;
    if (strcmp(exec, g_rec.exec) == 0) {
        if (g_rec.state == OTA_DOWNLOADING) {  /* republished document: refresh and ask again */
            g_last_progress_ms = ota_port_now_ms();
            if (ota_port_now_ms() - g_last_get_ms >= 1000u) send_get();
        } else if (g_rec.state == OTA_IDLE && g_rec.reason != OTA_R_NONE) {
            g_rec.state = OTA_REPORTING;  /* finished here before: repeat the final status */
            flush_report();
        }
        return;
    }
    if (g_rec.state != OTA_IDLE) return;  /* busy: the cloud republishes after our inventory */
    r = ota_job_accept(g_id, &g_floor, doc, len, &cand);
    if (cand.exec[0] == '\0') return;     /* not answerable */
    g_rec = cand;
    if (r != OTA_R_NONE) { g_rec.block_count = 0; finish(r); return; }
    start_download();
}

/* Program the payload part of a block at its place in the secondary slot. */
static int write_block(const ota_frame_t *f)
{
    uint32_t s = f->index * g_rec.block_size, e = s + f->len;
    uint32_t ps = s > g_rec.payload_off ? s : g_rec.payload_off, n, whole;
    const uint8_t *src;
    if (e <= ps) return 0;  /* header and envelope bytes: rebuilt from the job document, not stored */
    src = f->data + (ps - s);
    n = e - ps;
    whole = n - n % OTA_WRITE_ALIGN;
    if (whole && ota_port_flash_write(OTA_SLOT_SECONDARY, ps - g_rec.payload_off, src, whole) != 0) return -1;
    if (whole < n) {  /* the image's last bytes: pad one program unit with erased bytes */
        uint8_t unit[OTA_WRITE_ALIGN];
        memset(unit, 0xFF, sizeof unit);
        memcpy(unit, src + whole, n - whole);
        if (ota_port_flash_write(OTA_SLOT_SECONDARY, ps - g_rec.payload_off + whole, unit, sizeof unit) != 0) return -1;
    }
    return 0;
}

static void on_block(const uint8_t *buf, size_t len)
{
    ota_frame_t f;
    uint32_t expect;
    if (g_rec.state != OTA_DOWNLOADING || len > OTA_FRAME_HEADER + g_rec.block_size) return;
    if (ota_frame_decode(buf, len, &f) != 0 || f.stream != g_rec.stream || f.total != g_rec.block_count) return;
    expect = f.index + 1u == g_rec.block_count ? g_rec.package_size - g_rec.block_size * f.index : g_rec.block_size;
    if (f.len != expect) return;
    g_last_block_ms = ota_port_now_ms();
    if (ota_bm_get(g_bm, f.index)) { g_ack_due = 1; return; }  /* duplicate: changes nothing */
    if (write_block(&f) != 0) { finish(OTA_R_FLASH); return; }
    ota_bm_set(g_bm, f.index);
    g_new_since_ack++;
    g_last_progress_ms = g_last_block_ms;
    g_get_interval = OTA_GET_FIRST_MS;
    if (held() == g_rec.block_count) {
        send_ack();
        g_rec.state = OTA_VERIFYING;
        g_rec.progress = g_rec.block_count;
        save_record();
        send_status("IN_PROGRESS", "VERIFYING", NULL, g_rec.block_count);
    } else if (g_new_since_ack >= (g_rec.window / 2u ? g_rec.window / 2u : 1u)) {
        send_ack();
    }
}

void ota_on_message(const char *t, const uint8_t *payload, size_t len)
{
    if (strcmp(t, g_sub_blk) == 0) on_block(payload, len);
    else if (strcmp(t, g_sub_job) == 0 && len <= 122880u) on_job((const char *)payload, len);
}

static void verify_and_swap(void)
{
    ota_reason_t r = ota_verify_slot(&g_rec, g_id->image_key);
    if (r != OTA_R_NONE) { finish(r); return; }
    g_rec.state = OTA_SWAPPING;  /* persisted first: a reset from here on ends in resume_after_swap */
    save_record();
    if (ota_boot_request_test_swap() != 0) { finish(OTA_R_FLASH); return; }
    send_status("IN_PROGRESS", "INSTALLING", NULL, g_rec.block_count);
    ota_port_reboot();
}

void ota_tick(void)
{
    uint32_t now = ota_port_now_ms();
    switch (g_rec.state) {
    case OTA_DOWNLOADING:
        if (!g_connected) break;
        if ((g_new_since_ack || g_ack_due) && now - g_last_block_ms >= OTA_ACK_IDLE_MS) send_ack();
        if (now - g_last_progress_ms >= g_rec.stall_s * 1000u) { finish(OTA_R_STALLED); break; }
        if (now - g_last_progress_ms >= g_get_interval && now - g_last_get_ms >= g_get_interval) {
            send_get();
            g_get_interval = g_get_interval * 2u > OTA_GET_MAX_MS ? OTA_GET_MAX_MS : g_get_interval * 2u;
        }
        break;
    case OTA_VERIFYING: verify_and_swap(); break;
    case OTA_REPORTING: flush_report(); break;
    default: break;
    }
}
