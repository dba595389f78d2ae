// SPDX-License-Identifier: GPL-2.0-only
/*
 * "kho-agent ops": LUO operations read from stdin, one a line, each answered by one JSON line,
 * for the host's model-based test of /dev/liveupdate (src/uapi/). Every fd lives in a slot the
 * host names, so the host's model and this process agree on what "session 3" is. The ioctls are
 * issued raw: the size field, the bytes past the struct, the reserved fields and the ioctl
 * number are the host's to choose, so that the kernel's checks of each are reached.
 *
 * The grammar (src/uapi/ops-protocol.ts writes it; words separated by one space):
 *   open SLOT                         open /dev/liveupdate
 *   close SLOT
 *   create DEV SLOT NAME SIZE         CREATE_SESSION; NAME is hex bytes or "-" (empty)
 *   retrieve DEV SLOT NAME SIZE       RETRIEVE_SESSION
 *   preserve SESS FD TOKEN SIZE       PRESERVE_FD; FD is a slot or "bad" (-1)
 *   retrieve_fd SESS SLOT TOKEN SIZE  RETRIEVE_FD; the new file is described
 *   finish SESS RESERVED SIZE         FINISH
 *   get_name SESS RESERVED SIZE       GET_NAME; the name is returned
 *   raw SLOT NR DIR                   an ioctl of type 0xBA, number NR, direction none|w|r
 *   memfd SLOT BYTES SEED             a memfd of BYTES filled with the agent's pattern
 *   pipe SLOT | devnull SLOT          files that LUO has no handler for
 *   grow SLOT                         ftruncate by one page
 *   fork CHILD | kill CHILD           a child that holds every fd open now; SIGKILL and reap it
 *   reset                             kill every child, close every slot
 *   kexec                             reboot into the loaded kernel (no answer on success)
 * SIZE is exact (the struct's size), short (one byte less than the kernel's minimum), long0
 * (8 bytes more, zero) or longx (8 bytes more, not zero).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "error.h"
#include "json.h"
#include "args.h"
#include "kexec.h"
#include "luo.h"
#include "luo-uapi.h"
#include "pattern.h"
#include "sha256.h"

#define MAX_SLOTS 1024 /* src/uapi/ops.ts MAX_SLOTS */
#define MAX_CHILDREN 16 /* src/uapi/ops.ts MAX_CHILDREN */
#define MAX_WORDS 8

static int g_slot[MAX_SLOTS];
static pid_t g_child[MAX_CHILDREN];

/* The argument buffer: a struct, then room for the bytes past it that "long" sizes send. */
union ioctl_buf {
	struct liveupdate_ioctl_create_session create;
	struct liveupdate_session_preserve_fd preserve;
	struct liveupdate_session_retrieve_fd retrieve_fd;
	struct liveupdate_session_finish finish;
	struct liveupdate_session_get_name get_name;
	uint8_t bytes[128];
};

struct op_error {
	const char *why;
};

static bool parse_slot(const char *s, int *out)
{
	uint64_t v;
	if (!parse_u64(s, &v) || v >= MAX_SLOTS)
		return false;
	*out = (int)v;
	return true;
}

/* The fd in a slot, or -1 (a closed or never used slot). */
static int slot_fd(int slot)
{
	return g_slot[slot];
}

static void set_slot(int slot, int fd)
{
	if (g_slot[slot] >= 0)
		close(g_slot[slot]);
	g_slot[slot] = fd;
}

/* Sets the size field for SIZE; returns false for an unknown word. `min` is the kernel's minimum. */
static bool size_field(union ioctl_buf *b, const char *kind, uint32_t size, uint32_t min)
{
	uint32_t *field = (uint32_t *)b->bytes;
	if (!strcmp(kind, "exact"))
		*field = size;
	else if (!strcmp(kind, "short"))
		*field = min - 1;
	else if (!strcmp(kind, "long0"))
		*field = size + 8;
	else if (!strcmp(kind, "longx")) {
		*field = size + 8;
		b->bytes[size + 3] = 0x5a;
	} else
		return false;
	return true;
}

/* NAME: "-" is empty; otherwise hex, at most 64 bytes, copied raw (no NUL added past 63). */
static bool parse_name(const char *hex, uint8_t name[LIVEUPDATE_SESSION_NAME_LENGTH])
{
	size_t n = strlen(hex);
	if (!strcmp(hex, "-"))
		return true;
	if (n % 2 || n / 2 > LIVEUPDATE_SESSION_NAME_LENGTH)
		return false;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned int byte;
		if (sscanf(hex + 2 * i, "%2x", &byte) != 1)
			return false;
		name[i] = (uint8_t)byte;
	}
	return true;
}

/* What the host compares: the file's contents, size and inode. */
static void describe_fd(struct jw *w, int fd)
{
	struct stat st;
	struct sha256 s;
	char hex[65];
	uint8_t buf[65536];
	if (fstat(fd, &st)) {
		jw_kstr(w, "describe_error", strerror(errno));
		return;
	}
	sha256_init(&s);
	for (off_t off = 0; off < st.st_size;) {
		ssize_t n = pread(fd, buf, sizeof(buf), off);
		if (n <= 0) {
			jw_kstr(w, "describe_error", n < 0 ? strerror(errno) : "short read");
			return;
		}
		sha256_update(&s, buf, (size_t)n);
		off += n;
	}
	sha256_hex(&s, hex);
	jw_key(w, "file");
	jw_open(w, '{');
	jw_kstr(w, "sha256", hex);
	jw_ku64(w, "size", (uint64_t)st.st_size);
	jw_ku64(w, "ino", (uint64_t)st.st_ino);
	jw_close(w, '}');
}

static int do_ioctl(int fd, unsigned long cmd, union ioctl_buf *b)
{
	return ioctl(fd, cmd, b) < 0 ? errno : 0;
}

/* Runs one op; returns 0 or an errno, and sets e->why for a line it cannot parse. */
static int run_op(struct jw *w, char **a, int n, struct op_error *e)
{
	union ioctl_buf b;
	int s, t, err;
	uint64_t v;
	memset(&b, 0, sizeof(b));
#define NEED(count)                                              \
	do {                                                         \
		if (n != (count)) {                                  \
			e->why = "wrong number of words";            \
			return 0;                                    \
		}                                                    \
	} while (0)
#define SLOT(i, out)                                             \
	do {                                                         \
		if (!parse_slot(a[i], &(out))) {                     \
			e->why = "bad slot";                         \
			return 0;                                    \
		}                                                    \
	} while (0)
#define SIZE(word, type, min)                                           \
	do {                                                            \
		if (!size_field(&b, (word), sizeof(type), (min))) {     \
			e->why = "bad size kind";                       \
			return 0;                                       \
		}                                                       \
	} while (0)

	if (!strcmp(a[0], "open")) {
		NEED(2);
		SLOT(1, s);
		int fd = open(LIVEUPDATE_DEV, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return errno;
		set_slot(s, fd);
		return 0;
	}
	if (!strcmp(a[0], "close")) {
		NEED(2);
		SLOT(1, s);
		if (slot_fd(s) < 0)
			return EBADF;
		set_slot(s, -1);
		return 0;
	}
	if (!strcmp(a[0], "create") || !strcmp(a[0], "retrieve")) {
		NEED(5);
		SLOT(1, s);
		SLOT(2, t);
		if (!parse_name(a[3], b.create.name)) {
			e->why = "bad name";
			return 0;
		}
		SIZE(a[4], struct liveupdate_ioctl_create_session, sizeof(struct liveupdate_ioctl_create_session));
		b.create.fd = -1;
		err = do_ioctl(slot_fd(s), a[0][0] == 'c' ? LIVEUPDATE_IOCTL_CREATE_SESSION
							 : LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &b);
		if (!err)
			set_slot(t, b.create.fd);
		return err;
	}
	if (!strcmp(a[0], "preserve")) {
		NEED(5);
		SLOT(1, s);
		int fd = -1;
		if (strcmp(a[2], "bad")) {
			SLOT(2, t);
			fd = slot_fd(t);
		}
		if (!parse_u64(a[3], &v)) {
			e->why = "bad token";
			return 0;
		}
		SIZE(a[4], struct liveupdate_session_preserve_fd, sizeof(struct liveupdate_session_preserve_fd));
		b.preserve.fd = fd;
		b.preserve.token = v;
		return do_ioctl(slot_fd(s), LIVEUPDATE_SESSION_PRESERVE_FD, &b);
	}
	if (!strcmp(a[0], "retrieve_fd")) {
		NEED(5);
		SLOT(1, s);
		SLOT(2, t);
		if (!parse_u64(a[3], &v)) {
			e->why = "bad token";
			return 0;
		}
		SIZE(a[4], struct liveupdate_session_retrieve_fd, sizeof(struct liveupdate_session_retrieve_fd));
		b.retrieve_fd.fd = -1;
		b.retrieve_fd.token = v;
		err = do_ioctl(slot_fd(s), LIVEUPDATE_SESSION_RETRIEVE_FD, &b);
		if (!err) {
			set_slot(t, b.retrieve_fd.fd);
			describe_fd(w, b.retrieve_fd.fd);
		}
		return err;
	}
	if (!strcmp(a[0], "finish") || !strcmp(a[0], "get_name")) {
		bool finish = a[0][0] == 'f';
		NEED(4);
		SLOT(1, s);
		if (!parse_u64(a[2], &v) || v > UINT32_MAX) {
			e->why = "bad reserved value";
			return 0;
		}
		if (finish) {
			SIZE(a[3], struct liveupdate_session_finish, sizeof(struct liveupdate_session_finish));
			b.finish.reserved = (uint32_t)v;
		} else {
			SIZE(a[3], struct liveupdate_session_get_name, sizeof(struct liveupdate_session_get_name));
			b.get_name.reserved = (uint32_t)v;
		}
		err = do_ioctl(slot_fd(s), finish ? LIVEUPDATE_SESSION_FINISH : LIVEUPDATE_SESSION_GET_NAME, &b);
		if (!err && !finish) {
			char name[LIVEUPDATE_SESSION_NAME_LENGTH + 1];
			memcpy(name, b.get_name.name, LIVEUPDATE_SESSION_NAME_LENGTH);
			name[LIVEUPDATE_SESSION_NAME_LENGTH] = '\0';
			jw_kstr(w, "name", name);
		}
		return err;
	}
	if (!strcmp(a[0], "raw")) {
		NEED(4);
		SLOT(1, s);
		if (!parse_u64(a[2], &v) || v > 0xff) {
			e->why = "bad ioctl number";
			return 0;
		}
		unsigned int dir = !strcmp(a[3], "w") ? _IOC_WRITE : !strcmp(a[3], "r") ? _IOC_READ : _IOC_NONE;
		SIZE("exact", struct liveupdate_ioctl_create_session, sizeof(struct liveupdate_ioctl_create_session));
		unsigned long cmd = _IOC(dir, LIVEUPDATE_IOCTL_TYPE, (unsigned int)v, dir ? sizeof(b.create) : 0);
		return do_ioctl(slot_fd(s), cmd, &b);
	}
	if (!strcmp(a[0], "memfd")) {
		uint64_t seed;
		NEED(4);
		SLOT(1, s);
		if (!parse_u64(a[2], &v) || v > (64u << 20) || !parse_u64(a[3], &seed)) {
			e->why = "bad size or seed";
			return 0;
		}
		int fd = memfd_create("kho-ops", MFD_CLOEXEC);
		if (fd < 0)
			return errno;
		uint8_t buf[4096];
		for (uint64_t off = 0; off < v; off += sizeof(buf)) {
			size_t len = v - off < sizeof(buf) ? (size_t)(v - off) : sizeof(buf);
			pattern_fill(seed, off, buf, len);
			if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len) {
				err = errno;
				close(fd);
				return err ? err : EIO;
			}
		}
		set_slot(s, fd);
		describe_fd(w, fd);
		return 0;
	}
	if (!strcmp(a[0], "pipe")) {
		int p[2];
		NEED(2);
		SLOT(1, s);
		if (pipe2(p, O_CLOEXEC))
			return errno;
		close(p[1]);
		set_slot(s, p[0]);
		return 0;
	}
	if (!strcmp(a[0], "devnull")) {
		NEED(2);
		SLOT(1, s);
		int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return errno;
		set_slot(s, fd);
		return 0;
	}
	if (!strcmp(a[0], "grow")) {
		struct stat st;
		NEED(2);
		SLOT(1, s);
		if (fstat(slot_fd(s), &st))
			return errno;
		if (ftruncate(slot_fd(s), st.st_size + 4096))
			return errno;
		describe_fd(w, slot_fd(s));
		return 0;
	}
	if (!strcmp(a[0], "fork") || !strcmp(a[0], "kill")) {
		NEED(2);
		if (!parse_u64(a[1], &v) || v >= MAX_CHILDREN) {
			e->why = "bad child";
			return 0;
		}
		if (a[0][0] == 'k') {
			if (g_child[v] <= 0)
				return ESRCH;
			kill(g_child[v], SIGKILL);
			waitpid(g_child[v], NULL, 0);
			g_child[v] = 0;
			return 0;
		}
		if (g_child[v] > 0) {
			e->why = "child slot in use";
			return 0;
		}
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0)
			return errno;
		if (pid == 0) {
			/* holds every fd of the parent until killed; never writes to the host */
			for (;;)
				pause();
		}
		g_child[v] = pid;
		return 0;
	}
	if (!strcmp(a[0], "reset")) {
		NEED(1);
		for (int i = 0; i < MAX_CHILDREN; i++) {
			if (g_child[i] > 0) {
				kill(g_child[i], SIGKILL);
				waitpid(g_child[i], NULL, 0);
				g_child[i] = 0;
			}
		}
		for (int i = 0; i < MAX_SLOTS; i++)
			set_slot(i, -1);
		return 0;
	}
	if (!strcmp(a[0], "kexec")) {
		NEED(1);
		if (!background_load_done())
			fail_background_load();
		fflush(stdout);
		reboot_kexec();
		return errno;
	}
	e->why = "unknown op";
	return 0;
#undef NEED
#undef SLOT
#undef SIZE
}

int cmd_ops(int argc, char **argv)
{
	char line[512];
	(void)argv;
	if (argc != 2)
		usage_fail("ops takes no arguments: it reads operations from stdin");
	for (int i = 0; i < MAX_SLOTS; i++)
		g_slot[i] = -1;
	signal(SIGPIPE, SIG_IGN);
	while (fgets(line, sizeof(line), stdin)) {
		char *words[MAX_WORDS + 1], *save = NULL;
		int n = 0;
		struct op_error e = { 0 };
		struct jw w = { 0 };
		line[strcspn(line, "\r\n")] = '\0';
		for (char *tok = strtok_r(line, " ", &save); tok && n <= MAX_WORDS; tok = strtok_r(NULL, " ", &save))
			words[n++] = tok;
		if (!n)
			continue;
		jw_open(&w, '{');
		jw_kstr(&w, "op", words[0]);
		int err = n > MAX_WORDS ? 0 : run_op(&w, words, n, &e);
		if (n > MAX_WORDS)
			e.why = "too many words";
		if (e.why) {
			jw_kbool(&w, "ok", false);
			jw_kstr(&w, "bad_line", e.why);
		} else {
			jw_kbool(&w, "ok", err == 0);
			if (err)
				jw_errno(&w, err);
		}
		jw_close(&w, '}');
		jw_emit(&w);
		fflush(stdout);
		free(w.buf);
	}
	return 0;
}
