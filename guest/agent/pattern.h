/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The fill pattern and the layout a memfd spec gives it: what every byte of a memfd must be.
 * See README.md ("Pattern"); the host mirrors it in src/agent/model.ts (memfdPattern).
 */
#ifndef KHO_AGENT_PATTERN_H
#define KHO_AGENT_PATTERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "args.h"

/* Bytes [off, off + len) of the pattern with this seed. */
void pattern_fill(uint64_t seed, uint64_t off, uint8_t *buf, size_t len);

static inline bool page_written(const struct memfd_spec *m, uint64_t page)
{
	return m->sparse <= 1 || page % m->sparse == 0;
}

/* How far the fill writes: truncate=BIG grows the file past its final size first. */
static inline uint64_t fill_end(const struct memfd_spec *m)
{
	return m->has_truncate && m->truncate > m->size ? m->truncate : m->size;
}

/* Where data ends in the final file: truncate=SMALL cuts it and regrows with zeros. */
static inline uint64_t data_end(const struct memfd_spec *m)
{
	return m->has_truncate && m->truncate < m->size ? m->truncate : m->size;
}


/* The contents the spec must produce in [off, off + len): pattern in written pages, zeros elsewhere. */
void expected_fill(const struct memfd_spec *m, uint64_t off, uint8_t *buf, size_t len);

#endif
