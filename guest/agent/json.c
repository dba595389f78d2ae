// SPDX-License-Identifier: GPL-2.0-only
/* The JSON writer (json.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

void jw_put(struct jw *w, const char *s, size_t n)
{
	if (w->len + n + 1 > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		while (cap < w->len + n + 1)
			cap *= 2;
		char *p = realloc(w->buf, cap);
		if (!p) {
			fputs("{\"ok\":false,\"error\":\"out of memory\",\"errno\":12,\"errname\":\"ENOMEM\",\"step\":\"json\"}\n",
			      stdout);
			exit(1);
		}
		w->buf = p;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void jw_puts(struct jw *w, const char *s)
{
	jw_put(w, s, strlen(s));
}

/* Every value starts here: a comma unless it is the first in its container or follows a key. */
void jw_value(struct jw *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (w->need_comma[w->depth])
		jw_put(w, ",", 1);
	w->need_comma[w->depth] = true;
}

void jw_open(struct jw *w, char c)
{
	jw_value(w);
	jw_put(w, &c, 1);
	w->need_comma[++w->depth] = false;
}

void jw_close(struct jw *w, char c)
{
	w->depth--;
	jw_put(w, &c, 1);
}

static void jw_quoted(struct jw *w, const char *s)
{
	jw_put(w, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			jw_put(w, esc, 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			jw_puts(w, esc);
		} else {
			jw_put(w, (const char *)&c, 1);
		}
	}
	jw_put(w, "\"", 1);
}

void jw_key(struct jw *w, const char *k)
{
	jw_value(w);
	jw_quoted(w, k);
	jw_put(w, ":", 1);
	w->after_key = true;
}

void jw_str(struct jw *w, const char *s)
{
	jw_value(w);
	if (s)
		jw_quoted(w, s);
	else
		jw_puts(w, "null");
}

void jw_u64(struct jw *w, uint64_t v)
{
	char tmp[24];
	jw_value(w);
	snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	jw_puts(w, tmp);
}

void jw_i64(struct jw *w, int64_t v)
{
	char tmp[24];
	jw_value(w);
	snprintf(tmp, sizeof(tmp), "%" PRId64, v);
	jw_puts(w, tmp);
}

void jw_bool(struct jw *w, bool v)
{
	jw_value(w);
	jw_puts(w, v ? "true" : "false");
}

void jw_null(struct jw *w)
{
	jw_value(w);
	jw_puts(w, "null");
}

/* u64 values that may exceed 2^53 (tokens, seeds) go out as decimal strings. */
void jw_u64str(struct jw *w, uint64_t v)
{
	char tmp[24];
	snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	jw_str(w, tmp);
}

void jw_kstr(struct jw *w, const char *k, const char *v)
{
	jw_key(w, k);
	jw_str(w, v);
}

void jw_ku64(struct jw *w, const char *k, uint64_t v)
{
	jw_key(w, k);
	jw_u64(w, v);
}

void jw_ki64(struct jw *w, const char *k, int64_t v)
{
	jw_key(w, k);
	jw_i64(w, v);
}

void jw_kbool(struct jw *w, const char *k, bool v)
{
	jw_key(w, k);
	jw_bool(w, v);
}

void jw_emit(struct jw *w)
{
	fwrite(w->buf, 1, w->len, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	w->len = 0;
	w->depth = 0;
	w->need_comma[0] = false;
	w->after_key = false;
}
