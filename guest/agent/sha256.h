/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * SHA-256, with the CPU's SHA-256 instructions (x86 SHA-NI, arm64 FEAT_SHA256) for whole
 * blocks when present and they pass a known-answer check against the portable code.
 * KHO_AGENT_SHA256=c in the environment forces the portable code.
 */
#ifndef KHO_AGENT_SHA256_H
#define KHO_AGENT_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sha256 {
	uint32_t h[8];
	uint64_t bytes;
	uint8_t block[64];
	size_t used;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const uint8_t *p, size_t n);
/* Finishes the hash into 64 lowercase hex digits. */
void sha256_hex(struct sha256 *s, char out[65]);
/* Which code hashes whole blocks ("c", "x86 sha-ni", "arm64 sha2"): info's "sha256_impl". */
const char *sha256_impl(void);

#endif
