// SPDX-License-Identifier: GPL-2.0-only
/* The LUO ioctl wrappers and their log (luo.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "error.h"
#include "luo.h"

#include "luo-uapi.h"

const bool luo_uapi_header = AGENT_UAPI_HEADER;

static struct jw g_ioctl_log; /* the body of the "ioctls" array: one object per LUO ioctl */

void jw_ioctl_log(struct jw *w)
{
	jw_key(w, "ioctls");
	jw_value(w);
	jw_put(w, "[", 1);
	if (g_ioctl_log.len)
		jw_put(w, g_ioctl_log.buf, g_ioctl_log.len);
	jw_put(w, "]", 1);
}


/* Runs one LUO ioctl and appends it to the log; returns 0 or -errno. */
static int luo_ioctl(int fd, unsigned long cmd, const char *name, void *arg, const char *session,
		     const uint64_t *token, const int32_t *out_fd)
{
	int ret = ioctl(fd, cmd, arg);
	int err = ret < 0 ? errno : 0;
	char hex[16];
	struct jw *w = &g_ioctl_log;

	jw_open(w, '{');
	jw_kstr(w, "ioctl", name);
	snprintf(hex, sizeof(hex), "0x%lx", cmd);
	jw_kstr(w, "cmd", hex);
	if (session)
		jw_kstr(w, "session", session);
	if (token) {
		jw_key(w, "token");
		jw_u64str(w, *token);
	}
	jw_ki64(w, "ret", ret);
	if (err)
		jw_errno(w, err);
	else if (out_fd)
		jw_ki64(w, "fd", *out_fd);
	jw_close(w, '}');
	return err ? -err : 0;
}

/* Names are copied raw (up to 64 bytes, no forced NUL) so the kernel's own checks can be tested. */
static void copy_name(uint8_t dst[LIVEUPDATE_SESSION_NAME_LENGTH], const char *name)
{
	size_t n = strlen(name);
	memset(dst, 0, LIVEUPDATE_SESSION_NAME_LENGTH);
	memcpy(dst, name, n < LIVEUPDATE_SESSION_NAME_LENGTH ? n : LIVEUPDATE_SESSION_NAME_LENGTH);
}

/* Returns the new session fd, or -errno. */
int luo_create_session(int luo_fd, const char *name)
{
	struct liveupdate_ioctl_create_session arg = { .size = sizeof(arg), .fd = -1 };
	copy_name(arg.name, name);
	int r = luo_ioctl(luo_fd, LIVEUPDATE_IOCTL_CREATE_SESSION, "CREATE_SESSION", &arg, name, NULL, &arg.fd);
	return r < 0 ? r : arg.fd;
}

/* Returns the incoming session's fd, or -errno. */
int luo_retrieve_session(int luo_fd, const char *name)
{
	struct liveupdate_ioctl_retrieve_session arg = { .size = sizeof(arg), .fd = -1 };
	copy_name(arg.name, name);
	int r = luo_ioctl(luo_fd, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "RETRIEVE_SESSION", &arg, name, NULL,
			  &arg.fd);
	return r < 0 ? r : arg.fd;
}

int luo_preserve_fd(int session_fd, const char *session, int fd, uint64_t token)
{
	struct liveupdate_session_preserve_fd arg = { .size = sizeof(arg), .fd = fd, .token = token };
	return luo_ioctl(session_fd, LIVEUPDATE_SESSION_PRESERVE_FD, "PRESERVE_FD", &arg, session, &token, NULL);
}

/* Returns the retrieved file's fd, or -errno. */
int luo_retrieve_fd(int session_fd, const char *session, uint64_t token)
{
	struct liveupdate_session_retrieve_fd arg = { .size = sizeof(arg), .fd = -1, .token = token };
	int r = luo_ioctl(session_fd, LIVEUPDATE_SESSION_RETRIEVE_FD, "RETRIEVE_FD", &arg, session, &token,
			  &arg.fd);
	return r < 0 ? r : arg.fd;
}

int luo_finish(int session_fd, const char *session)
{
	struct liveupdate_session_finish arg = { .size = sizeof(arg) };
	return luo_ioctl(session_fd, LIVEUPDATE_SESSION_FINISH, "FINISH", &arg, session, NULL, NULL);
}

/* Fills out[65] with the kernel's idea of the session name; returns 0 or -errno. */
static int luo_get_name(int session_fd, const char *session, char out[LIVEUPDATE_SESSION_NAME_LENGTH + 1])
{
	struct liveupdate_session_get_name arg = { .size = sizeof(arg) };
	int r = luo_ioctl(session_fd, LIVEUPDATE_SESSION_GET_NAME, "GET_NAME", &arg, session, NULL, NULL);
	memcpy(out, arg.name, LIVEUPDATE_SESSION_NAME_LENGTH);
	out[LIVEUPDATE_SESSION_NAME_LENGTH] = '\0';
	return r;
}

int open_liveupdate(void)
{
	int fd = open(LIVEUPDATE_DEV, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		fail("open_liveupdate", errno, "open %s", LIVEUPDATE_DEV);
	return fd;
}

void jw_session_name(struct jw *w, int session_fd, const char *session)
{
	char name[LIVEUPDATE_SESSION_NAME_LENGTH + 1];
	jw_key(w, "get_name");
	if (luo_get_name(session_fd, session, name) == 0)
		jw_str(w, name);
	else
		jw_null(w);
}
