/*
 * ota_config.h: compile-time limits of the OTA MCU library. Override any of them with -D.
 *
 * These bound every static buffer; the library has no heap. RAM use scales with OTA_MAX_BLOCKS
 * (bitmap: OTA_MAX_BLOCKS / 8 bytes, plus its base64 form in the ack buffer).
 */
#ifndef OTA_CONFIG_H
#define OTA_CONFIG_H

/* Most blocks one package may have (a 512 KiB image in 256-byte blocks). Bitmap = this / 8 bytes. */
#ifndef OTA_MAX_BLOCKS
#define OTA_MAX_BLOCKS 2048u
#endif

/* Largest block_size a job may ask for: the integrator's MQTT receive buffer must hold 13 + this. */
#ifndef OTA_MAX_BLOCK_SIZE
#define OTA_MAX_BLOCK_SIZE 4096u
#endif

/* Flash program unit (bytes). Block boundaries and the payload start must be multiples of it. */
#ifndef OTA_WRITE_ALIGN
#define OTA_WRITE_ALIGN 8u
#endif

/* MCUboot's BOOT_MAX_ALIGN: the size of each trailer field (swap info, copy done, image ok). */
#ifndef OTA_BOOT_MAX_ALIGN
#define OTA_BOOT_MAX_ALIGN 8u
#endif

/* Bytes read from flash at a time while hashing an image. */
#ifndef OTA_READ_CHUNK
#define OTA_READ_CHUNK 256u
#endif

/* Static arena serving Mbed TLS's bignum allocations during one ECDSA P-256 verification. Measured
 * under QEMU (Cortex-M3, 32-bit): 3072 bytes suffice, 2816 do not; 64-bit hosts need about 5 KiB. */
#ifndef OTA_CRYPTO_ARENA
#define OTA_CRYPTO_ARENA 3328u
#endif

/* Outgoing message buffer (status, ack, get, inventory); must hold a full bitmap in base64 (checked
 * at compile time in ota_agent.c), so raise it with OTA_MAX_BLOCKS. */
#ifndef OTA_TX_BUFFER
#define OTA_TX_BUFFER 640u
#endif

/* Timing, in milliseconds, as docs/protocol.md section 7. */
#define OTA_ACK_IDLE_MS 50u
#define OTA_GET_FIRST_MS 1000u
#define OTA_GET_MAX_MS 8000u
#define OTA_STALL_DEFAULT_S 120u

#define OTA_AGENT_VERSION "1.0.0"

#endif
