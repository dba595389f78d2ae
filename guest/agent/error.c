// SPDX-License-Identifier: GPL-2.0-only
/* The command's context and its error object (error.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "luo.h"

const char *g_command = "none";
const char *g_ctx_session; /* the session being worked on, for error reports */
bool g_ctx_has_token;
uint64_t g_ctx_token;

const char *errname(int err)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	const char *name = strerrorname_np(err);
	if (name)
		return name;
#endif
	static char buf[16];
	snprintf(buf, sizeof(buf), "E%d", err);
	return buf;
}

void jw_errno(struct jw *w, int err)
{
	jw_ki64(w, "errno", err);
	jw_key(w, "errname");
	if (err)
		jw_str(w, errname(err));
	else
		jw_null(w);
}

/* Prints the error object for the current command (not exiting: --wait reports and goes on). */
static void report_error(const char *step, int err, const char *fmt, va_list ap)
{
	char msg[512];
	struct jw w = { 0 };
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (err && n >= 0 && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(err));
	jw_open(&w, '{');
	jw_kbool(&w, "ok", false);
	jw_kstr(&w, "command", g_command);
	jw_kstr(&w, "error", msg);
	jw_errno(&w, err);
	jw_kstr(&w, "step", step);
	if (g_ctx_session)
		jw_kstr(&w, "session", g_ctx_session);
	if (g_ctx_has_token) {
		jw_key(&w, "token");
		jw_u64str(&w, g_ctx_token);
	}
	jw_ioctl_log(&w);
	jw_close(&w, '}');
	jw_emit(&w);
	free(w.buf);
}

void warn_error(const char *step, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report_error(step, err, fmt, ap);
	va_end(ap);
}

void fail(const char *step, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report_error(step, err, fmt, ap);
	va_end(ap);
	exit(1);
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p)
		fail("alloc", ENOMEM, "calloc(%zu, %zu)", n, size);
	return p;
}
