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
 *   tmpfile SLOT BYTES SEED           an O_TMPFILE in /dev/shm (shmem, no link: LUO takes it)
 *   pipe SLOT | devnull SLOT          files that LUO has no handler for
 *   shmfile SLOT                      a linked file in /dev/shm (shmem with a link: refused)
 *   grow SLOT                         ftruncate by one page
 *   fork CHILD | kill CHILD           a child that holds every fd open now; SIGKILL and reap it
 *   reset                             kill every child, close every slot
 *   kexec                             reboot into the loaded kernel (no answer on success)
 *   race_finish SESS TOKENS           a child retrieves while this process FINISHes
 *   race_reboot DEV SESS PREFIX MIN   threads mutate LUO while this one reboots (kexec)
 *   race_reboot_check DEV NAME PREFIX what of race_reboot came back, after the kexec
 *   race_close ITER                   ioctls on a device or session fd closed under them
 * SIZE is exact (the struct's size), short (one byte less than the kernel's minimum), long0
 * (8 bytes more, zero) or longx (8 bytes more, not zero).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
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
static bool g_linked[MAX_SLOTS]; /* /dev/shm/kho-ops-SLOT made by shmfile: unlinked at reset */
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

/* ---- races: each bounded, each answering counts the host checks (src/scenarios/luo-races.ts) ---- */

#define RACE_BYTES 4096

/* Whether fd holds the pattern of `seed` over RACE_BYTES. */
static bool race_content_ok(int fd, uint64_t seed)
{
	uint8_t got[RACE_BYTES], want[RACE_BYTES];
	if (pread(fd, got, sizeof(got), 0) != (ssize_t)sizeof(got))
		return false;
	pattern_fill(seed, 0, want, sizeof(want));
	return !memcmp(got, want, sizeof(got));
}

static int race_memfd(uint64_t seed)
{
	uint8_t buf[RACE_BYTES];
	int fd = memfd_create("kho-race", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	pattern_fill(seed, 0, buf, sizeof(buf));
	if (pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf)) {
		int err = errno;
		close(fd);
		return -(err ? err : EIO);
	}
	return fd;
}

static int race_preserve(int session_fd, int fd, uint64_t token)
{
	union ioctl_buf b;
	memset(&b, 0, sizeof(b));
	b.preserve.size = sizeof(b.preserve);
	b.preserve.fd = fd;
	b.preserve.token = token;
	return do_ioctl(session_fd, LIVEUPDATE_SESSION_PRESERVE_FD, &b);
}

/* RETRIEVE_FD: the new fd, or -errno. */
static int race_retrieve_fd(int session_fd, uint64_t token)
{
	union ioctl_buf b;
	memset(&b, 0, sizeof(b));
	b.retrieve_fd.size = sizeof(b.retrieve_fd);
	b.retrieve_fd.fd = -1;
	b.retrieve_fd.token = token;
	int err = do_ioctl(session_fd, LIVEUPDATE_SESSION_RETRIEVE_FD, &b);
	return err ? -err : b.retrieve_fd.fd;
}

/* CREATE_SESSION / RETRIEVE_SESSION of a C string: the fd, or -errno. */
static int race_session(int dev_fd, unsigned long cmd, const char *name)
{
	union ioctl_buf b;
	memset(&b, 0, sizeof(b));
	b.create.size = sizeof(b.create);
	b.create.fd = -1;
	strncpy((char *)b.create.name, name, sizeof(b.create.name) - 1);
	int err = do_ioctl(dev_fd, cmd, &b);
	return err ? -err : b.create.fd;
}

/* Shared between the finisher and the retriever: a page both processes map. */
struct race_finish_shared {
	int ok, enoent, other, other_errno, bad_content, after_finish_ok, passes;
	int finished;
};

/*
 * race_finish SESS TOKENS: a child retrieves tokens 1..TOKENS (memfds of RACE_BYTES, seed =
 * token) over and over while this process FINISHes the session once the child has one file.
 * A retrieve that starts after FINISH returned must fail with ENOENT (luo_file_finish empties
 * the session under its mutex); one before may get the file, whose contents must be intact.
 */
static int race_finish(struct jw *w, int session_fd, uint64_t tokens)
{
	struct race_finish_shared *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return errno;
	memset(sh, 0, sizeof(*sh));
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		return errno;
	if (pid == 0) {
		for (int pass = 0; pass < 5000; pass++) {
			int failed = 0;
			for (uint64_t t = 1; t <= tokens; t++) {
				bool after = __atomic_load_n(&sh->finished, __ATOMIC_SEQ_CST);
				int fd = race_retrieve_fd(session_fd, t);
				if (fd >= 0) {
					__atomic_add_fetch(&sh->ok, 1, __ATOMIC_SEQ_CST);
					if (after)
						sh->after_finish_ok++;
					if (!race_content_ok(fd, t))
						sh->bad_content++;
					close(fd);
				} else if (fd == -ENOENT) {
					sh->enoent++;
					failed++;
				} else {
					sh->other++;
					sh->other_errno = -fd;
					failed++;
				}
			}
			sh->passes = pass + 1;
			if ((uint64_t)failed == tokens)
				break;
		}
		_exit(0);
	}
	for (int i = 0; i < 100000 && !__atomic_load_n(&sh->ok, __ATOMIC_SEQ_CST); i++)
		usleep(100);
	union ioctl_buf b;
	memset(&b, 0, sizeof(b));
	b.finish.size = sizeof(b.finish);
	int err = do_ioctl(session_fd, LIVEUPDATE_SESSION_FINISH, &b);
	__atomic_store_n(&sh->finished, 1, __ATOMIC_SEQ_CST);
	waitpid(pid, NULL, 0);
	jw_key(w, "race");
	jw_open(w, '{');
	jw_ki64(w, "finish_errno", err);
	jw_ki64(w, "ok", sh->ok);
	jw_ki64(w, "enoent", sh->enoent);
	jw_ki64(w, "other", sh->other);
	jw_ki64(w, "other_errno", sh->other_errno);
	jw_ki64(w, "bad_content", sh->bad_content);
	jw_ki64(w, "after_finish_ok", sh->after_finish_ok);
	jw_ki64(w, "passes", sh->passes);
	jw_close(w, '}');
	munmap(sh, 4096);
	return 0;
}

struct race_reboot_state {
	int dev_fd, session_fd;
	char prefix[32];
	int preserved, preserve_errno, sides, side_errno;
};

/* Preserves memfds (seed = token) into the session until an error or the reboot. */
static void *race_reboot_preserver(void *arg)
{
	struct race_reboot_state *st = arg;
	for (uint64_t token = 1;; token++) {
		int fd = race_memfd(token);
		if (fd < 0) {
			st->preserve_errno = -fd;
			return NULL;
		}
		int err = race_preserve(st->session_fd, fd, token);
		close(fd);
		if (err) {
			st->preserve_errno = err;
			return NULL;
		}
		__atomic_add_fetch(&st->preserved, 1, __ATOMIC_SEQ_CST);
	}
}

/* Creates sessions PREFIX-J, each with one memfd (token 1, seed 1000 + J), until the reboot. */
static void *race_reboot_creator(void *arg)
{
	struct race_reboot_state *st = arg;
	for (int j = 0;; j++) {
		char name[64];
		snprintf(name, sizeof(name), "%s-%d", st->prefix, j);
		int s = race_session(st->dev_fd, LIVEUPDATE_IOCTL_CREATE_SESSION, name);
		if (s < 0) {
			st->side_errno = -s;
			return NULL;
		}
		int fd = race_memfd(1000 + (uint64_t)j);
		int err = fd < 0 ? -fd : race_preserve(s, fd, 1);
		if (fd >= 0)
			close(fd);
		if (err) {
			st->side_errno = err;
			return NULL;
		}
		/* the session fd stays open: it is handed over */
		__atomic_add_fetch(&st->sides, 1, __ATOMIC_SEQ_CST);
	}
}

/*
 * race_reboot DEV SESS PREFIX MIN: two threads mutate LUO (PRESERVE_FD into SESS; new sessions
 * PREFIX-J with a memfd each) while this thread reboots into the loaded kernel once the first
 * has preserved MIN files and the second made a session. Answers only if the reboot fails.
 */
static int race_reboot(struct jw *w, int dev_fd, int session_fd, const char *prefix, uint64_t min)
{
	static struct race_reboot_state st;
	pthread_t a, c;
	memset(&st, 0, sizeof(st));
	st.dev_fd = dev_fd;
	st.session_fd = session_fd;
	snprintf(st.prefix, sizeof(st.prefix), "%s", prefix);
	if (!background_load_done())
		fail_background_load();
	if (pthread_create(&a, NULL, race_reboot_preserver, &st) || pthread_create(&c, NULL, race_reboot_creator, &st))
		return EAGAIN;
	/* both threads under way: MIN files preserved and a side session made (or one of them failed) */
	for (int i = 0; i < 600000 && !st.preserve_errno && !st.side_errno &&
			((uint64_t)__atomic_load_n(&st.preserved, __ATOMIC_SEQ_CST) < min ||
			 !__atomic_load_n(&st.sides, __ATOMIC_SEQ_CST));
	     i++)
		usleep(100);
	fflush(stdout);
	reboot_kexec();
	int err = errno;
	jw_key(w, "race");
	jw_open(w, '{');
	jw_ki64(w, "preserved", __atomic_load_n(&st.preserved, __ATOMIC_SEQ_CST));
	jw_ki64(w, "preserve_errno", st.preserve_errno);
	jw_ki64(w, "sides", __atomic_load_n(&st.sides, __ATOMIC_SEQ_CST));
	jw_ki64(w, "side_errno", st.side_errno);
	jw_close(w, '}');
	return err;
}

/* Retrieves tokens 1.. of a retrieved session until LIMIT: how many, gaps, bad contents. */
static void race_drain(int session_fd, uint64_t seed_base, uint64_t limit, long *files, long *gaps, long *bad,
		       long *other)
{
	bool ended = false;
	for (uint64_t t = 1; t <= limit; t++) {
		int fd = race_retrieve_fd(session_fd, t);
		if (fd >= 0) {
			if (ended)
				(*gaps)++;
			(*files)++;
			if (!race_content_ok(fd, seed_base ? seed_base : t))
				(*bad)++;
			close(fd);
		} else if (fd == -ENOENT) {
			ended = true;
		} else {
			(*other)++;
		}
	}
}

/*
 * race_reboot_check DEV SESSNAME PREFIX: after the kexec, what came back of race_reboot: the
 * session's files (tokens 1..n, no gaps, contents by seed = token) and the sessions PREFIX-J
 * (J = 0..m-1 without gaps, each one memfd of seed 1000 + J, except that the last may be empty:
 * the reboot can come between its CREATE_SESSION and its PRESERVE_FD).
 */
static int race_reboot_check(struct jw *w, int dev_fd, const char *name, const char *prefix)
{
	long files = 0, gaps = 0, bad = 0, other = 0, sides = 0, side_gaps = 0, side_files = 0;
	long empty = 0, empty_not_last = 0; /* side sessions without their memfd */
	int s = race_session(dev_fd, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name);
	if (s < 0)
		return -s;
	race_drain(s, 0, 100000, &files, &gaps, &bad, &other);
	close(s);
	bool ended = false;
	for (int j = 0; j < 100000; j++) {
		char side[64];
		snprintf(side, sizeof(side), "%s-%d", prefix, j);
		int fd = race_session(dev_fd, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, side);
		if (fd < 0) {
			if (fd != -ENOENT)
				other++;
			if (ended && j > 64)
				break;
			ended = true;
			continue;
		}
		if (ended)
			side_gaps++;
		sides++;
		long sf = 0;
		race_drain(fd, 1000 + (uint64_t)j, 2, &sf, &gaps, &bad, &other);
		side_files += sf;
		if (empty && sf)
			empty_not_last++; /* an empty session before a full one */
		if (!sf)
			empty++;
		close(fd);
	}
	jw_key(w, "race");
	jw_open(w, '{');
	jw_ki64(w, "files", files);
	jw_ki64(w, "gaps", gaps);
	jw_ki64(w, "bad_content", bad);
	jw_ki64(w, "other", other);
	jw_ki64(w, "sides", sides);
	jw_ki64(w, "side_files", side_files);
	jw_ki64(w, "side_gaps", side_gaps);
	jw_ki64(w, "side_empty", empty);
	jw_ki64(w, "side_empty_not_last", empty_not_last);
	jw_close(w, '}');
	return 0;
}

struct race_close_state {
	int fd; /* the device or session fd the main thread closes */
	int dev_fd;
	int iteration;
	bool session; /* preserve into fd; else create sessions on it */
	int ok, ebadf, other, other_errno;
	int memfds[4096];
	int nmemfds;
};

static void *race_close_worker(void *arg)
{
	struct race_close_state *st = arg;
	for (int k = 0; k < 4096; k++) {
		int err;
		if (st->session) {
			int fd = race_memfd((uint64_t)k);
			if (fd < 0)
				return NULL;
			st->memfds[st->nmemfds++] = fd;
			err = race_preserve(st->fd, fd, (uint64_t)k + 1);
		} else {
			char name[64];
			snprintf(name, sizeof(name), "close-race-%d-%d", st->iteration, k);
			int s = race_session(st->fd, LIVEUPDATE_IOCTL_CREATE_SESSION, name);
			err = s < 0 ? -s : 0;
			if (s >= 0)
				close(s);
		}
		if (!err) {
			__atomic_add_fetch(&st->ok, 1, __ATOMIC_SEQ_CST);
		} else if (err == EBADF) {
			st->ebadf++;
			return NULL;
		} else {
			st->other++;
			st->other_errno = err;
			return NULL;
		}
	}
	return NULL;
}

static int open_device_retrying(void)
{
	for (int i = 0; i < 1000; i++) {
		int fd = open(LIVEUPDATE_DEV, O_RDWR | O_CLOEXEC);
		if (fd >= 0 || errno != EBUSY)
			return fd < 0 ? -errno : fd;
		usleep(1000);
	}
	return -EBUSY;
}

/*
 * race_close ITER: ITER times, a thread issues ioctls on /dev/liveupdate (CREATE_SESSION) and
 * then on a session (PRESERVE_FD of new memfds) while this thread closes that fd under it. The
 * ioctls may succeed or see EBADF, nothing else; the device opens again afterwards; and every
 * memfd of a closed session is unfrozen (its release unpreserved all, even one preserved by
 * an ioctl in flight at the close).
 */
static int race_close(struct jw *w, uint64_t iterations)
{
	static struct race_close_state st;
	long ok = 0, ebadf = 0, other = 0, other_errno = 0, frozen = 0, reopen_errno = 0, memfds = 0;
	for (uint64_t i = 0; i < iterations * 2; i++) {
		pthread_t t;
		bool session = i % 2;
		int dev = open_device_retrying();
		if (dev < 0) {
			reopen_errno = -dev;
			break;
		}
		memset(&st, 0, sizeof(st));
		st.iteration = (int)i;
		st.session = session;
		st.dev_fd = dev;
		st.fd = dev;
		if (session) {
			char name[64];
			snprintf(name, sizeof(name), "close-race-s-%d", (int)i);
			st.fd = race_session(dev, LIVEUPDATE_IOCTL_CREATE_SESSION, name);
			if (st.fd < 0) {
				other++;
				other_errno = -st.fd;
				close(dev);
				break;
			}
		}
		/* a high fd number: the worker's own new fds cannot take it over once it is closed */
		int high = fcntl(st.fd, F_DUPFD_CLOEXEC, 900);
		if (high < 0)
			return errno;
		close(st.fd);
		if (!session)
			st.dev_fd = dev = high;
		st.fd = high;
		if (pthread_create(&t, NULL, race_close_worker, &st))
			return EAGAIN;
		for (int k = 0; k < 100000 && __atomic_load_n(&st.ok, __ATOMIC_SEQ_CST) < 3; k++)
			usleep(50);
		close(st.fd);
		pthread_join(t, NULL);
		ok += st.ok;
		ebadf += st.ebadf;
		other += st.other;
		if (st.other)
			other_errno = st.other_errno;
		for (int k = 0; k < st.nmemfds; k++) {
			if (ftruncate(st.memfds[k], RACE_BYTES * 2))
				frozen++;
			close(st.memfds[k]);
			memfds++;
		}
		if (session)
			close(dev);
	}
	int last = open_device_retrying();
	if (last < 0 && !reopen_errno)
		reopen_errno = -last;
	if (last >= 0)
		close(last);
	jw_key(w, "race");
	jw_open(w, '{');
	jw_ki64(w, "ok", ok);
	jw_ki64(w, "ebadf", ebadf);
	jw_ki64(w, "other", other);
	jw_ki64(w, "other_errno", other_errno);
	jw_ki64(w, "memfds", memfds);
	jw_ki64(w, "frozen_after_close", frozen);
	jw_ki64(w, "reopen_errno", reopen_errno);
	jw_close(w, '}');
	return 0;
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
	if (!strcmp(a[0], "memfd") || !strcmp(a[0], "tmpfile")) {
		uint64_t seed;
		NEED(4);
		SLOT(1, s);
		if (!parse_u64(a[2], &v) || v > (64u << 20) || !parse_u64(a[3], &seed)) {
			e->why = "bad size or seed";
			return 0;
		}
		int fd = a[0][0] == 'm' ? memfd_create("kho-ops", MFD_CLOEXEC)
					: open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
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
	if (!strcmp(a[0], "shmfile")) {
		char path[64];
		NEED(2);
		SLOT(1, s);
		snprintf(path, sizeof(path), "/dev/shm/kho-ops-%d", s);
		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			return errno;
		g_linked[s] = true;
		set_slot(s, fd);
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
		for (int i = 0; i < MAX_SLOTS; i++) {
			set_slot(i, -1);
			if (g_linked[i]) {
				char path[64];
				snprintf(path, sizeof(path), "/dev/shm/kho-ops-%d", i);
				unlink(path);
				g_linked[i] = false;
			}
		}
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
	if (!strcmp(a[0], "race_finish")) {
		NEED(3);
		SLOT(1, s);
		if (!parse_u64(a[2], &v) || !v || v > 64) {
			e->why = "bad token count";
			return 0;
		}
		return race_finish(w, slot_fd(s), v);
	}
	if (!strcmp(a[0], "race_reboot")) {
		NEED(5);
		SLOT(1, s);
		SLOT(2, t);
		if (strlen(a[3]) > 24 || !parse_u64(a[4], &v)) {
			e->why = "bad prefix or count";
			return 0;
		}
		return race_reboot(w, slot_fd(s), slot_fd(t), a[3], v);
	}
	if (!strcmp(a[0], "race_reboot_check")) {
		NEED(4);
		SLOT(1, s);
		return race_reboot_check(w, slot_fd(s), a[2], a[3]);
	}
	if (!strcmp(a[0], "race_close")) {
		NEED(2);
		if (!parse_u64(a[1], &v) || !v || v > 1000) {
			e->why = "bad iteration count";
			return 0;
		}
		return race_close(w, v);
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
