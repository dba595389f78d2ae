/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The command being run, what it works on, and its error object: every failure prints
 * {"ok":false,"command","error","errno","errname","step",["session","token"],"ioctls"}.
 */
#ifndef KHO_AGENT_ERROR_H
#define KHO_AGENT_ERROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"

extern const char *g_command;
extern const char *g_ctx_session; /* the session being worked on, for error reports */
extern bool g_ctx_has_token;
extern uint64_t g_ctx_token;

/* "ENOENT" and so on ("E<n>" when the C library has no name for it). */
const char *errname(int err);
/* "errno":n,"errname":str|null (null for 0). */
void jw_errno(struct jw *w, int err);

/* Prints the error object for the current command (not exiting: --wait reports and goes on). */
__attribute__((format(printf, 3, 4))) void warn_error(const char *step, int err, const char *fmt, ...);
/* Prints the error object and exits 1. */
__attribute__((noreturn, format(printf, 3, 4))) void fail(const char *step, int err, const char *fmt, ...);

#define usage_fail(...) fail("usage", 0, __VA_ARGS__)

/* calloc that fails the command (step "alloc") instead of returning NULL. */
void *xcalloc(size_t n, size_t size);

#endif
