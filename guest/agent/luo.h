/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The LUO ioctls on /dev/liveupdate and its session fds. Each call is logged, whatever its
 * outcome, for the "ioctls" array of the result line and of the error object.
 */
#ifndef KHO_AGENT_LUO_H
#define KHO_AGENT_LUO_H

#include <stdbool.h>
#include <stdint.h>

#include "json.h"

#ifndef LIVEUPDATE_DEV
#define LIVEUPDATE_DEV "/dev/liveupdate" /* tests build with a stand-in */
#endif

/* Whether the build found <linux/liveupdate.h> (else it uses its own copy of the uapi): info's "uapi_header". */
extern const bool luo_uapi_header;

/* Opens LIVEUPDATE_DEV, or fails the command (step "open_liveupdate"). */
int open_liveupdate(void);

/* Each returns the new fd, or -errno. */
int luo_create_session(int luo_fd, const char *name);
int luo_retrieve_session(int luo_fd, const char *name);
int luo_retrieve_fd(int session_fd, const char *session, uint64_t token);
/* Each returns 0 or -errno. */
int luo_preserve_fd(int session_fd, const char *session, int fd, uint64_t token);
int luo_finish(int session_fd, const char *session);

/* "get_name": the kernel's idea of the session's name (GET_NAME), null when the ioctl fails. */
void jw_session_name(struct jw *w, int session_fd, const char *session);
/* "ioctls": every LUO ioctl so far, in order. */
void jw_ioctl_log(struct jw *w);

#endif
