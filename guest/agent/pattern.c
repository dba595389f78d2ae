// SPDX-License-Identifier: GPL-2.0-only
/* The fill pattern (pattern.h). */
#include <endian.h>
#include <string.h>

#include "agent.h"
#include "pattern.h"

/*
 * Byte o of a memfd with seed S is byte (o % 8) (little-endian) of splitmix64(S, o / 8):
 * it depends only on the offset, so write()/mmap fills, sparse files and the host's own
 * model all agree. The host mirrors this in src/agent/model.ts (memfdPattern).
 */
static uint64_t pattern_word(uint64_t seed, uint64_t index)
{
	uint64_t z = seed + (index + 1) * 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint8_t pattern_byte(uint64_t seed, uint64_t o)
{
	return (uint8_t)(pattern_word(seed, o / 8) >> (8 * (o % 8)));
}

/* Byte b of word w is w >> 8b: the word's little-endian layout, stored whole where aligned
 * (a byte loop costs 8x the instructions, which TCG makes seconds for 256 MiB). */
void pattern_fill(uint64_t seed, uint64_t off, uint8_t *buf, size_t len)
{
	size_t i = 0;
	for (; i < len && (off + i) % 8; i++)
		buf[i] = pattern_byte(seed, off + i);
	for (; i + 8 <= len; i += 8) {
		uint64_t w = htole64(pattern_word(seed, (off + i) / 8));
		memcpy(buf + i, &w, 8);
	}
	for (; i < len; i++)
		buf[i] = pattern_byte(seed, off + i);
}

/* The contents the spec must produce in [off, off + len): pattern in written pages, zeros elsewhere. */
void expected_fill(const struct memfd_spec *m, uint64_t off, uint8_t *buf, size_t len)
{
	uint64_t end = off + len, live = data_end(m);
	uint64_t seed = m->has_rewrite ? m->rewrite_seed : m->seed;
	memset(buf, 0, len);
	for (uint64_t o = off; o < end && o < live;) {
		uint64_t page = o / g_page_size, next = (page + 1) * g_page_size;
		if (next > end)
			next = end;
		if (next > live)
			next = live;
		if (page_written(m, page))
			pattern_fill(seed, o, buf + (o - off), (size_t)(next - o));
		o = next;
	}
}
