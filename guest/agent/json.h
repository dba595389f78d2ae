/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The JSON writer: one object built into a buffer, then printed as one line of stdout. Values
 * go in order; commas and the key/value colons are the writer's business.
 */
#ifndef KHO_AGENT_JSON_H
#define KHO_AGENT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jw {
	char *buf;
	size_t len, cap;
	int depth;
	bool need_comma[32];
	bool after_key;
};

/* Raw bytes, no separator: for splicing in what another writer already holds. */
void jw_put(struct jw *w, const char *s, size_t n);
/* Every value starts here: a comma unless it is the first in its container or follows a key. */
void jw_value(struct jw *w);
void jw_open(struct jw *w, char c);
void jw_close(struct jw *w, char c);
void jw_key(struct jw *w, const char *k);
void jw_str(struct jw *w, const char *s); /* NULL: null */
void jw_u64(struct jw *w, uint64_t v);
void jw_i64(struct jw *w, int64_t v);
void jw_bool(struct jw *w, bool v);
void jw_null(struct jw *w);
/* u64 values that may exceed 2^53 (tokens, seeds) go out as decimal strings. */
void jw_u64str(struct jw *w, uint64_t v);
void jw_kstr(struct jw *w, const char *k, const char *v);
void jw_ku64(struct jw *w, const char *k, uint64_t v);
void jw_ki64(struct jw *w, const char *k, int64_t v);
void jw_kbool(struct jw *w, const char *k, bool v);
/* Prints the object as one line of stdout and empties the writer for the next one. */
void jw_emit(struct jw *w);

#endif
