/*
 * ota_json.h: a strict, in-place scanner for canonical JSON (sorted keys, no whitespace).
 *
 * Does: validate a value's syntax while skipping it (strings, integers, literals, objects, arrays,
 * nesting <= 16), look up a member of an object, read plain strings and unsigned integers.
 * Does not: build a tree, allocate, unescape strings with escapes (refused where a plain string is
 * required), accept floats, whitespace, duplicate or unsorted keys. Refusing non-canonical input is
 * what lets the device hash the manifest's bytes exactly as they were signed.
 */
#ifndef OTA_JSON_H
#define OTA_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *p;  /* first byte of the value (a string span includes its quotes) */
    size_t n;       /* length in bytes */
} ota_span_t;

/* Validate one value at [p, end); returns the byte after it, or NULL if malformed. */
const char *ota_json_skip(const char *p, const char *end, int depth);
/* The value of member `key` in object `obj`; 0 if found, -1 if absent or malformed. */
int ota_json_get(ota_span_t obj, const char *key, ota_span_t *out);
/* Copy a string value without escapes into out (NUL-terminated, at most cap-1 chars); -1 otherwise. */
int ota_json_str(ota_span_t v, char *out, size_t cap);
/* 1 if v is the string s exactly. */
int ota_json_eq(ota_span_t v, const char *s);
/* A non-negative integer <= 0xFFFFFFFF; -1 otherwise. */
int ota_json_u32(ota_span_t v, uint32_t *out);
/* Iterate an array: *it starts at arr.p; returns 1 with the next element, 0 at the end, -1 on error. */
int ota_json_next(ota_span_t arr, const char **it, ota_span_t *elem);

#endif
