// SPDX-License-Identifier: GPL-2.0-only
/*
 * kho-agent: the guest half of the KHO/LUO test harness.
 *
 * It does what a shell cannot: LUO ioctls on /dev/liveupdate, memfds filled with a
 * reproducible pattern, SHA-256 of their contents, their physical frames from
 * /proc/self/pagemap, kexec_file_load and reboot(LINUX_REBOOT_CMD_KEXEC). Every command
 * prints exactly one JSON object on one line of stdout, so the host parses results, not
 * prose. See README.md next to this file for the grammar and the JSON shapes.
 *
 * This file: main() and the commands. The rest: json.c (JSON writer), error.c (the error
 * object), args.c (command line), luo.c (LUO ioctls), pattern.c (fill pattern), memfd.c
 * (memfds and their reports), sha256.c, kexec.c (load and reboot), kho.c (--kho-state) and
 * init.c (run as /init, the same binary sets the guest up).
 *
 * Build: gcc -static -O2 -Wall -Wextra -Werror -I<kernel uapi headers> -o kho-agent *.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "args.h"
#include "error.h"
#include "json.h"
#include "kexec.h"
#include "kho.h"
#include "luo.h"
#include "memfd.h"
#include "sha256.h"

uint64_t g_page_size;

/* Where the agent's own time went, summed over memfds (ms): "timings_ms" in every result. */
struct agent_timings g_ms;

double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

#define TIMED(field, stmt)                          \
	do {                                        \
		double t0_ = now_ms();              \
		stmt;                               \
		g_ms.field += now_ms() - t0_;       \
	} while (0)

/* Reads a small text file, strips the trailing newline; false if unreadable. */
bool read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return true;
}

static void jw_kfile(struct jw *w, const char *key, const char *path)
{
	char buf[4096];
	jw_key(w, key);
	if (read_text(path, buf, sizeof(buf)))
		jw_str(w, buf);
	else
		jw_null(w);
}

static void boot_id(struct jw *w)
{
	jw_kfile(w, "boot_id", "/proc/sys/kernel/random/boot_id");
}

/* ---------------------------------------------------------- holding the sessions ---- */

static void event_line(const char *event)
{
	struct jw w = { 0 };
	jw_open(&w, '{');
	jw_kbool(&w, "ok", true);
	jw_kstr(&w, "command", g_command);
	jw_kstr(&w, "event", event);
	jw_close(&w, '}');
	jw_emit(&w);
	free(w.buf);
}

static volatile sig_atomic_t g_kexec_signal;

static void on_sigusr1(int sig)
{
	(void)sig;
	g_kexec_signal = 1;
}

/*
 * After the result line: keep every fd (sessions, memfds) open and obey stdin, one word a
 * line. "kexec" (or SIGUSR1, for a backgrounded agent) reboots into the loaded kernel, "ping"
 * answers, "abort" or EOF exits (closing the outgoing sessions, which unpreserves their files).
 */
static int wait_for_host(void)
{
	char line[64];
	struct sigaction sa = { .sa_handler = on_sigusr1 }; /* no SA_RESTART: the signal ends fgets */
	sigaction(SIGUSR1, &sa, NULL);
	for (;;) {
		if (!fgets(line, sizeof(line), stdin)) {
			if (!g_kexec_signal && !(ferror(stdin) && errno == EINTR))
				break;
			clearerr(stdin);
			line[0] = '\0';
		}
		if (g_kexec_signal) {
			g_kexec_signal = 0;
			strcpy(line, "kexec");
		}
		line[strcspn(line, "\r\n")] = '\0';
		if (!strcmp(line, "kexec")) {
			if (!background_load_done())
				fail_background_load();
			event_line("kexec");
			reboot_kexec();
			warn_error("reboot", errno, "reboot(LINUX_REBOOT_CMD_KEXEC)");
		} else if (!strcmp(line, "ping")) {
			event_line("pong");
		} else if (!strcmp(line, "abort")) {
			event_line("abort");
			background_load_done();
			return 0;
		} else if (line[0]) {
			warn_error("wait", 0, "unknown line \"%s\" (kexec, ping, abort)", line);
		}
	}
	event_line("eof");
	background_load_done();
	return 0;
}

/* ------------------------------------------------------------- preserve and restore ---- */

/* Common tail of preserve and restore: optional kexec load, the result line, then wait or kexec. */
static int finish_command(struct jw *w, const struct opts *o)
{
	g_ctx_session = NULL;
	g_ctx_has_token = false;
	if (o->kho_state)
		jw_kho_state(w);
	report_kexec_load(w, &o->kexec);
	jw_kbool(w, "wait", o->wait);
	jw_key(w, "timings_ms");
	jw_open(w, '{');
	jw_ku64(w, "fill", (uint64_t)g_ms.fill);
	jw_ku64(w, "preserve_fd", (uint64_t)g_ms.preserve_fd);
	jw_ku64(w, "retrieve_fd", (uint64_t)g_ms.retrieve_fd);
	jw_ku64(w, "contents", (uint64_t)g_ms.contents);
	jw_ku64(w, "pages", (uint64_t)g_ms.pages);
	jw_ku64(w, "kexec_load", (uint64_t)g_ms.kexec_load);
	jw_close(w, '}');
	jw_ioctl_log(w);
	jw_close(w, '}');
	jw_emit(w);
	if (o->kexec_now) {
		reboot_kexec();
		fail("reboot", errno, "reboot(LINUX_REBOOT_CMD_KEXEC)");
	}
	return o->wait ? wait_for_host() : 0;
}

static void begin_result(struct jw *w, bool luo)
{
	jw_open(w, '{');
	jw_kbool(w, "ok", true);
	jw_kstr(w, "command", g_command);
	jw_kbool(w, "luo", luo);
	boot_id(w);
	jw_ki64(w, "pid", getpid());
	jw_ku64(w, "page_size", g_page_size);
}

/* {"errno":n,"errname":str} under `key`: the outcome of an ioctl that was allowed to fail. */
static void jw_ioctl_error(struct jw *w, const char *key, int err)
{
	jw_key(w, key);
	jw_open(w, '{');
	jw_errno(w, err);
	jw_close(w, '}');
}

/* "ok" or the errname of a LUO call's -errno result. */
static void jw_luo_outcome(struct jw *w, const char *key, int ret)
{
	jw_kstr(w, key, ret >= 0 ? "ok" : errname(-ret));
}

/*
 * After FINISH, the session fd is still open: try to use it again. Every LUO call is logged in
 * "ioctls" too. A call that unexpectedly hands out an fd has it closed again. Then each
 * retrieved memfd, now owned by userspace alone, gets the freeze probe (all must be "ok": the
 * file is an ordinary memfd again) and its contents are hashed once more.
 */
static void after_finish(struct jw *w, int luo_fd, struct session_spec *ss)
{
	jw_key(w, "after_finish");
	jw_open(w, '{');
	jw_key(w, "retrieve_fd");
	jw_open(w, '[');
	for (size_t i = 0; i < ss->n_memfds + ss->n_probe_tokens; i++) {
		uint64_t token = i < ss->n_memfds ? ss->memfds[i].token : ss->probe_tokens[i - ss->n_memfds];
		int fd = luo_retrieve_fd(ss->fd, ss->name, token);
		jw_open(w, '{');
		jw_key(w, "token");
		jw_u64str(w, token);
		jw_luo_outcome(w, "result", fd);
		jw_close(w, '}');
		if (fd >= 0)
			close(fd);
	}
	jw_close(w, ']');
	jw_luo_outcome(w, "finish_again", luo_finish(ss->fd, ss->name));
	int mfd = memfd_create("kho-agent-after-finish", MFD_CLOEXEC);
	if (mfd < 0)
		fail("memfd_create", errno, "memfd_create(after-finish)");
	jw_luo_outcome(w, "preserve_fd", luo_preserve_fd(ss->fd, ss->name, mfd, 0xaf));
	close(mfd);
	int sfd = luo_retrieve_session(luo_fd, ss->name);
	jw_luo_outcome(w, "retrieve_session", sfd);
	if (sfd >= 0)
		close(sfd);
	jw_key(w, "memfds");
	jw_open(w, '[');
	for (size_t i = 0; i < ss->n_memfds; i++) {
		struct memfd_spec *m = &ss->memfds[i];
		struct stat st;
		if (m->fd < 0)
			continue;
		if (fstat(m->fd, &st))
			fail("fstat", errno, "fstat");
		jw_open(w, '{');
		jw_key(w, "token");
		jw_u64str(w, m->token);
		probe_freeze(w, m->fd);
		report_contents(w, m, (uint64_t)st.st_size, m->has_size);
		jw_close(w, '}');
	}
	jw_close(w, ']');
	jw_close(w, '}');
}

/* ---------------------------------------------------------------------- commands ---- */

static int cmd_preserve(int argc, char **argv)
{
	struct opts o = parse_opts(argc, argv, true);
	struct jw w = { 0 };
	bool luo = !o.no_luo;

	if (o.finish || o.load_only)
		usage_fail("--finish/--carry/--after-finish/--load-only are not preserve options");
	for (size_t s = 0; s < o.n_sessions; s++)
		if (o.sessions[s].n_probe_tokens)
			usage_fail("--probe-token is a restore --after-finish option");
	int luo_fd = luo ? open_liveupdate() : -1;
	if (o.wait && o.kexec.kernel)
		start_background_load(&o.kexec);
	begin_result(&w, luo);
	jw_key(&w, "sessions");
	jw_open(&w, '[');
	for (size_t s = 0; s < o.n_sessions; s++) {
		struct session_spec *ss = &o.sessions[s];
		g_ctx_session = ss->name;
		g_ctx_has_token = false;
		if (luo) {
			ss->fd = luo_create_session(luo_fd, ss->name);
			if (ss->fd < 0)
				fail("create_session", -ss->fd, "LIVEUPDATE_IOCTL_CREATE_SESSION \"%s\"", ss->name);
		}
		jw_open(&w, '{');
		jw_kstr(&w, "name", ss->name);
		jw_ki64(&w, "fd", ss->fd);
		if (luo)
			jw_session_name(&w, ss->fd, ss->name);
		jw_key(&w, "memfds");
		jw_open(&w, '[');
		for (size_t i = 0; i < ss->n_memfds; i++) {
			struct memfd_spec *m = &ss->memfds[i];
			g_ctx_has_token = true;
			g_ctx_token = m->token;
			TIMED(fill, create_memfd(m));
			if (luo) {
				int r;
				TIMED(preserve_fd, r = luo_preserve_fd(ss->fd, ss->name, m->fd, m->token));
				if (r < 0 && !m->try_ioctl)
					fail("preserve_fd", -r, "LIVEUPDATE_SESSION_PRESERVE_FD token %" PRIu64, m->token);
				m->ioctl_err = -r;
			}
			if (m->has_rewrite)
				rewrite_memfd(m);
			jw_open(&w, '{');
			jw_key(&w, "token");
			jw_u64str(&w, m->token);
			jw_kbool(&w, "preserved", luo && !m->ioctl_err);
			if (m->ioctl_err)
				jw_ioctl_error(&w, "preserve_error", m->ioctl_err);
			jw_fill_spec(&w, m);
			uint64_t size = report_file(&w, m->fd);
			if (m->probe_freeze)
				probe_freeze(&w, m->fd);
			TIMED(contents, report_contents(&w, m, size, true));
			/* after PRESERVE_FD: pinning fills holes and migrates pages, so PFNs are final now */
			TIMED(pages, report_pages(&w, m, size));
			jw_close(&w, '}');
		}
		jw_close(&w, ']');
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	/* the session fds keep the sessions alive; the device itself may be reopened by others */
	if (luo_fd >= 0)
		close(luo_fd);
	return finish_command(&w, &o);
}

static int cmd_restore(int argc, char **argv)
{
	struct opts o = parse_opts(argc, argv, false);
	struct jw w = { 0 };
	int luo_fd;

	if (o.no_luo || o.load_only)
		usage_fail("--no-luo/--load-only are not restore options");
	if (o.after_finish && o.carry)
		usage_fail("--after-finish and --carry exclude each other");
	luo_fd = open_liveupdate();
	if (o.wait && o.kexec.kernel)
		start_background_load(&o.kexec);
	begin_result(&w, true);
	jw_key(&w, "sessions");
	jw_open(&w, '[');
	for (size_t s = 0; s < o.n_sessions; s++) {
		struct session_spec *ss = &o.sessions[s];
		g_ctx_session = ss->name;
		g_ctx_has_token = false;
		ss->fd = luo_retrieve_session(luo_fd, ss->name);
		if (ss->fd < 0)
			fail("retrieve_session", -ss->fd, "LIVEUPDATE_IOCTL_RETRIEVE_SESSION \"%s\"", ss->name);
		jw_open(&w, '{');
		jw_kstr(&w, "name", ss->name);
		jw_ki64(&w, "fd", ss->fd);
		jw_session_name(&w, ss->fd, ss->name);
		jw_key(&w, "memfds");
		jw_open(&w, '[');
		for (size_t i = 0; i < ss->n_memfds; i++) {
			struct memfd_spec *m = &ss->memfds[i];
			g_ctx_has_token = true;
			g_ctx_token = m->token;
			TIMED(retrieve_fd, m->fd = luo_retrieve_fd(ss->fd, ss->name, m->token));
			if (m->fd < 0 && !m->try_ioctl)
				fail("retrieve_fd", -m->fd, "LIVEUPDATE_SESSION_RETRIEVE_FD token %" PRIu64, m->token);
			jw_open(&w, '{');
			jw_key(&w, "token");
			jw_u64str(&w, m->token);
			if (m->fd < 0) {
				/* under try: the errno is the result; nothing to read */
				m->ioctl_err = -m->fd;
				jw_ioctl_error(&w, "retrieve_error", m->ioctl_err);
				jw_close(&w, '}');
				continue;
			}
			uint64_t size = report_file(&w, m->fd);
			if (m->probe_freeze)
				probe_freeze(&w, m->fd); /* after retrieve the file must be thawed again */
			TIMED(contents, report_contents(&w, m, size, m->has_size));
			TIMED(pages, report_pages(&w, m, size));
			jw_close(&w, '}');
		}
		jw_close(&w, ']');
		g_ctx_has_token = false;
		if (o.finish) {
			int r = luo_finish(ss->fd, ss->name);
			if (r < 0)
				fail("finish", -r, "LIVEUPDATE_SESSION_FINISH \"%s\"", ss->name);
		}
		jw_kbool(&w, "finished", o.finish);
		if (o.after_finish)
			after_finish(&w, luo_fd, ss);
		jw_key(&w, "carry");
		if (!o.carry) {
			jw_null(&w);
		} else {
			/* the next hop: a new outgoing session of the same name holding the same files */
			int nfd = luo_create_session(luo_fd, ss->name);
			if (nfd < 0)
				fail("carry_create_session", -nfd, "LIVEUPDATE_IOCTL_CREATE_SESSION \"%s\"", ss->name);
			jw_open(&w, '{');
			jw_ki64(&w, "fd", nfd);
			jw_key(&w, "memfds");
			jw_open(&w, '[');
			for (size_t i = 0; i < ss->n_memfds; i++) {
				struct memfd_spec *m = &ss->memfds[i];
				if (m->fd < 0)
					continue; /* a token that was not there (try) */
				g_ctx_has_token = true;
				g_ctx_token = m->token;
				int r = luo_preserve_fd(nfd, ss->name, m->fd, m->token);
				if (r < 0)
					fail("carry_preserve_fd", -r, "LIVEUPDATE_SESSION_PRESERVE_FD token %" PRIu64,
					     m->token);
				jw_open(&w, '{');
				jw_key(&w, "token");
				jw_u64str(&w, m->token);
				struct stat st;
				if (fstat(m->fd, &st))
					fail("fstat", errno, "fstat");
				report_pages(&w, m, (uint64_t)st.st_size);
				jw_close(&w, '}');
			}
			jw_close(&w, ']');
			jw_close(&w, '}');
		}
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	close(luo_fd);
	return finish_command(&w, &o);
}

/*
 * kexec --loaded: reboot into the kernel an earlier "kexec --load-only" loaded. Loading again
 * would read and hash both images a second time (~0.6 s under TCG) for nothing.
 */
static int reboot_loaded(const struct opts *o)
{
	char loaded[16];
	struct jw w = { 0 };
	if (o->kexec.kernel || o->load_only || o->n_sessions || o->wait || o->kexec_now || o->no_luo || o->finish ||
	    o->kho_state)
		usage_fail("kexec --loaded takes no other option");
	if (!read_text("/sys/kernel/kexec_loaded", loaded, sizeof(loaded)) || strcmp(loaded, "1") != 0)
		fail("kexec", ENOENT, "no kernel is loaded (/sys/kernel/kexec_loaded is not 1): run kexec --load-only first");
	jw_open(&w, '{');
	jw_kbool(&w, "ok", true);
	jw_kstr(&w, "command", g_command);
	boot_id(&w);
	jw_kbool(&w, "rebooting", true);
	jw_close(&w, '}');
	jw_emit(&w);
	reboot_kexec();
	fail("reboot", errno, "reboot(LINUX_REBOOT_CMD_KEXEC)");
}

static int cmd_kexec(int argc, char **argv)
{
	struct opts o = parse_opts(argc, argv, false);
	struct jw w = { 0 };
	if (o.loaded)
		return reboot_loaded(&o);
	if (!o.kexec.kernel)
		usage_fail("kexec needs --kernel PATH or --loaded");
	if (o.n_sessions || o.wait || o.kexec_now || o.no_luo || o.finish)
		usage_fail("kexec takes only --kernel, --initrd, --cmdline/--reuse-cmdline, --kexec-flags, --load-only");
	jw_open(&w, '{');
	jw_kbool(&w, "ok", true);
	jw_kstr(&w, "command", g_command);
	boot_id(&w);
	kexec_load(&w, &o.kexec);
	jw_kbool(&w, "rebooting", !o.load_only);
	jw_close(&w, '}');
	jw_emit(&w);
	if (o.load_only)
		return 0;
	reboot_kexec();
	fail("reboot", errno, "reboot(LINUX_REBOOT_CMD_KEXEC)");
}

static int cmd_info(int argc, char **argv)
{
	struct utsname u;
	struct jw w = { 0 };
	(void)argv;
	if (argc > 2)
		usage_fail("info takes no arguments");
	uname(&u);
	jw_open(&w, '{');
	jw_kbool(&w, "ok", true);
	jw_kstr(&w, "command", g_command);
	boot_id(&w);
	jw_kstr(&w, "release", u.release);
	jw_kstr(&w, "machine", u.machine);
	jw_kfile(&w, "cmdline", "/proc/cmdline");
	jw_kbool(&w, "liveupdate_dev", access(LIVEUPDATE_DEV, F_OK) == 0);
	jw_ku64(&w, "page_size", g_page_size);
	jw_ki64(&w, "euid", geteuid());
	jw_kfile(&w, "kexec_loaded", "/sys/kernel/kexec_loaded");
	jw_kfile(&w, "shmem_enabled", "/sys/kernel/mm/transparent_hugepage/shmem_enabled");
	jw_kbool(&w, "uapi_header", luo_uapi_header);
	jw_kstr(&w, "sha256_impl", sha256_impl());
	jw_close(&w, '}');
	jw_emit(&w);
	free(w.buf);
	return 0;
}

static const char USAGE[] =
	"usage: kho-agent preserve [--session NAME [--memfd TOKEN:SIZE[:opt,...]]...]...\n"
	"                          [--kexec-kernel PATH [--kexec-initrd PATH] [--cmdline STR|--reuse-cmdline]]\n"
	"                          [--kexec-flags N] [--wait | --kexec-now] [--kho-state]\n"
	"       kho-agent restore  [--session NAME [--memfd TOKEN[:SIZE[:opt,...]]]... [--probe-token N]...]...\n"
	"                          [--finish | --after-finish | --carry] [--kho-state]\n"
	"                          [kexec options as for preserve] [--wait | --kexec-now]\n"
	"       kho-agent kexec    --kernel PATH [--initrd PATH] [--cmdline STR|--reuse-cmdline] [--load-only]\n"
	"       kho-agent kexec    --loaded   (reboot into the kernel --load-only loaded)\n"
	"       kho-agent info\n"
	"       kho-agent ops      (LUO operations from stdin, one a line: see ops.c)\n"
	"memfd options: seed=N write mmap thp sparse=STRIDE truncate=SIZE pos=N seal=a+b fallocate\n"
	"               rewrite=SEED probe-freeze hugetlb nohash noread try   (sizes take K/M/G suffixes)\n";

int main(int argc, char **argv)
{
	struct rlimit rl;
	/* /init links here: PID 1's signal dispositions and limits are every process's, so the
	 * init starts before this program changes either. */
	const char *self = strrchr(argv[0], '/');
	if (!strcmp(self ? self + 1 : argv[0], "init"))
		return guest_init();
	signal(SIGPIPE, SIG_IGN);
	g_page_size = (uint64_t)sysconf(_SC_PAGESIZE);
	/* stress scenarios hold thousands of session and memfd fds */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(USAGE, stderr);
		return argc < 2 ? 1 : 0;
	}
	g_command = argv[1];
	if (!strcmp(argv[1], "preserve"))
		return cmd_preserve(argc, argv);
	if (!strcmp(argv[1], "restore"))
		return cmd_restore(argc, argv);
	if (!strcmp(argv[1], "kexec"))
		return cmd_kexec(argc, argv);
	if (!strcmp(argv[1], "info"))
		return cmd_info(argc, argv);
	if (!strcmp(argv[1], "ops"))
		return cmd_ops(argc, argv);
	g_command = "none";
	usage_fail("unknown command \"%s\" (preserve, restore, kexec, info, ops)", argv[1]);
}
