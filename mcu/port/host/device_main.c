/*
 * device_main.c: the library as a device on a POSIX host, over MQTT with libmosquitto (mTLS, QoS 1,
 * persistent session, TCP_NODELAY). Flash and key-value store are files (file_port.c); at start-up
 * it plays MCUboot (bootsim.c) on the slot files, and ota_port_reboot() makes it exec itself, so a
 * "reboot" loses all RAM state exactly as a reset would. Killing the process is a power cut.
 *
 * Usage: ota_device --dir DIR --epn EPN --model MODEL --app APP --host H --port P --ca CA.pem
 *        --cert DEV.crt --key DEV.key --publisher POINT_HEX:KEYID_HEX --image-key POINT_HEX
 * The identity (keys, certificate) is provisioned by the caller, as a factory would.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#include "bootsim.h"
#include "file_port.h"
#include "ota_codec.h"
#include "ota_mcu.h"

static struct mosquitto *g_mosq;
static int g_pending, g_reboot;
static volatile sig_atomic_t g_stop;
static char **g_argv;

static void logf_(const char *what, const char *detail)
{
    fprintf(stderr, "[ota_device %ld] %s %s\n", (long)time(NULL), what, detail ? detail : "");
    fflush(stderr);
}

int ota_port_publish(const char *topic, const uint8_t *payload, uint16_t len)
{
    int mid, rc = mosquitto_publish(g_mosq, &mid, topic, len, payload, 1, false);
    if (rc == MOSQ_ERR_SUCCESS) g_pending++;
    if (strstr(topic, "/status")) fprintf(stderr, "[ota_device] publish %s %.*s\n", topic, (int)len, (const char *)payload);
    return rc == MOSQ_ERR_SUCCESS ? 0 : -1;
}

void ota_port_reboot(void) { g_reboot = 1; }
int ota_port_self_test(void) { return getenv("OTA_MCU_SELF_TEST_FAIL") ? 1 : 0; }

static void on_connect(struct mosquitto *m, void *u, int rc)
{
    char *topics[2] = {(char *)ota_topic(OTA_TOPIC_JOB), (char *)ota_topic(OTA_TOPIC_BLK)};
    (void)u;
    if (rc != 0) { logf_("connect refused", mosquitto_connack_string(rc)); return; }
    mosquitto_subscribe_multiple(m, NULL, 2, topics, 1, 0, NULL);
    logf_("connected", NULL);
    ota_connected();
}

static void on_disconnect(struct mosquitto *m, void *u, int rc) { (void)m; (void)u; (void)rc; ota_disconnected(); }
static void on_publish(struct mosquitto *m, void *u, int mid) { (void)m; (void)u; (void)mid; if (g_pending) g_pending--; }

static void on_message(struct mosquitto *m, void *u, const struct mosquitto_message *msg)
{
    (void)m; (void)u;
    ota_on_message(msg->topic, msg->payload, (size_t)msg->payloadlen);
}

static const char *arg(int argc, char **argv, const char *name)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    fprintf(stderr, "ota_device: missing %s\n", name);
    exit(2);
}

static int hex(const char *s, uint8_t *out, size_t n) { return strlen(s) == 2 * n ? ota_hex_decode(s, 2 * n, out) : -1; }

/* What MCUboot does at reset, on the slot files. */
static void boot(void)
{
    uint8_t *a = malloc(FILE_SLOT_SIZE), *b = malloc(FILE_SLOT_SIZE);
    int what;
    if (!a || !b || file_port_load(OTA_SLOT_PRIMARY, a) || file_port_load(OTA_SLOT_SECONDARY, b)) { logf_("boot", "cannot read slots"); exit(1); }
    what = ota_bootsim(a, b, FILE_SLOT_SIZE);
    if (what && (file_port_store(OTA_SLOT_SECONDARY, b) || file_port_store(OTA_SLOT_PRIMARY, a))) exit(1);
    logf_("boot", what == 1 ? "swapped in the new image (trial)" : what == 2 ? "reverted an unconfirmed image" : "");
    free(a);
    free(b);
}

static void on_term(int sig) { (void)sig; g_stop = 1; }

static void reboot_now(void)
{
    for (int i = 0; i < 300 && g_pending > 0; i++) mosquitto_loop(g_mosq, 10, 1);  /* flush QoS 1 */
    mosquitto_disconnect(g_mosq);
    mosquitto_loop(g_mosq, 10, 1);
    mosquitto_destroy(g_mosq);
    mosquitto_lib_cleanup();
    logf_("reboot", NULL);
    execv("/proc/self/exe", g_argv);
    logf_("reboot failed", NULL);
    exit(1);
}

int main(int argc, char **argv)
{
    static ota_pubkey_t pub;
    static uint8_t image_key[65];
    static ota_identity_t id;
    const char *pubarg, *host;
    int port, backoff = 1;

    g_argv = argv;
    setvbuf(stderr, NULL, _IOLBF, 0);
    pubarg = arg(argc, argv, "--publisher");
    if (strlen(pubarg) != 130 + 1 + 16 || pubarg[130] != ':' || ota_hex_decode(pubarg, 130, pub.point) ||
        ota_hex_decode(pubarg + 131, 16, pub.keyid) || hex(arg(argc, argv, "--image-key"), image_key, 65)) {
        fprintf(stderr, "ota_device: bad --publisher or --image-key\n");
        return 2;
    }
    id.epn = arg(argc, argv, "--epn");
    id.model = arg(argc, argv, "--model");
    id.app = arg(argc, argv, "--app");
    id.publishers = &pub;
    id.publisher_count = 1;
    id.image_key = image_key;
    host = arg(argc, argv, "--host");
    port = atoi(arg(argc, argv, "--port"));
    if (file_port_init(arg(argc, argv, "--dir")) != 0) { logf_("cannot use", arg(argc, argv, "--dir")); return 1; }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    boot();
    ota_init(&id);

    mosquitto_lib_init();
    g_mosq = mosquitto_new(id.epn, false, NULL);  /* persistent session: QoS 1 kept while offline */
    if (!g_mosq) return 1;
    mosquitto_int_option(g_mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_int_option(g_mosq, MOSQ_OPT_TCP_NODELAY, 1);
    if (mosquitto_tls_set(g_mosq, arg(argc, argv, "--ca"), NULL, arg(argc, argv, "--cert"), arg(argc, argv, "--key"), NULL)) {
        logf_("bad TLS files", NULL);
        return 1;
    }
    mosquitto_connect_callback_set(g_mosq, on_connect);
    mosquitto_disconnect_callback_set(g_mosq, on_disconnect);
    mosquitto_publish_callback_set(g_mosq, on_publish);
    mosquitto_message_callback_set(g_mosq, on_message);
    while (!g_stop && mosquitto_connect(g_mosq, host, port, 30) != MOSQ_ERR_SUCCESS) {
        logf_("connect failed, retrying", NULL);
        sleep((unsigned)backoff);
        backoff = backoff * 2 > 30 ? 30 : backoff * 2;
    }
    while (!g_stop) {
        if (mosquitto_loop(g_mosq, 10, 1) != MOSQ_ERR_SUCCESS) {
            ota_disconnected();
            sleep((unsigned)backoff);
            backoff = backoff * 2 > 30 ? 30 : backoff * 2;
            mosquitto_reconnect(g_mosq);
            continue;
        }
        backoff = 1;
        ota_tick();
        if (g_reboot) reboot_now();
    }
    mosquitto_disconnect(g_mosq);
    mosquitto_destroy(g_mosq);
    mosquitto_lib_cleanup();
    return 0;
}
