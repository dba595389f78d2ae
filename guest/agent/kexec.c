// SPDX-License-Identifier: GPL-2.0-only
/* kexec load and reboot (kexec.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/reboot.h>

#include "agent.h"
#include "error.h"
#include "kexec.h"

#ifndef KEXEC_FILE_NO_INITRAMFS
#define KEXEC_FILE_NO_INITRAMFS 0x00000004
#endif

/* One kexec_file_load: its inputs opened up front (so a bad path fails at once), its outcome. */
struct kexec_load_job {
	const struct kexec_opts *k;
	const char *cmdline;
	int kfd, ifd;
	unsigned long flags;
	/* A held agent's load runs on `thread` (see start_background_load) */
	pthread_t thread;
	bool in_background;
	int err;
	double ms;
};

static void prepare_load(struct kexec_load_job *j, const struct kexec_opts *k)
{
	static char cmdline[8192];
	j->k = k;
	j->cmdline = k->cmdline;
	if (k->reuse_cmdline) {
		if (!read_text("/proc/cmdline", cmdline, sizeof(cmdline)))
			fail("read_cmdline", errno, "read /proc/cmdline");
		j->cmdline = cmdline;
	}
	j->kfd = open(k->kernel, O_RDONLY | O_CLOEXEC);
	if (j->kfd < 0)
		fail("open_kernel", errno, "open kernel %s", k->kernel);
	j->ifd = -1;
	if (k->initrd && (j->ifd = open(k->initrd, O_RDONLY | O_CLOEXEC)) < 0)
		fail("open_initrd", errno, "open initrd %s", k->initrd);
	j->flags = (unsigned long)k->extra_flags | (j->ifd < 0 ? KEXEC_FILE_NO_INITRAMFS : 0);
}

/* The agent's tests build with a stand-in that fails: no test may kexec the host. */
#ifndef KEXEC_FILE_LOAD
#define KEXEC_FILE_LOAD(kfd, ifd, cl_len, cl, flags) syscall(SYS_kexec_file_load, kfd, ifd, cl_len, cl, flags)
#endif

/* The syscall alone: no output, no exit, so it may run on another thread. */
static void *run_load(void *arg)
{
	struct kexec_load_job *j = arg;
	double t0 = now_ms();
	/* the length counts the NUL; the kernel checks it is there */
	unsigned long cl_len = j->cmdline ? strlen(j->cmdline) + 1 : 0;
	j->err = KEXEC_FILE_LOAD(j->kfd, j->ifd, cl_len, j->cmdline, j->flags) ? errno : 0;
	j->ms = now_ms() - t0;
	close(j->kfd);
	if (j->ifd >= 0)
		close(j->ifd);
	return NULL;
}

__attribute__((noreturn)) static void fail_load(const struct kexec_load_job *j)
{
	fail("kexec_file_load", j->err, "kexec_file_load(%s)", j->k->kernel);
}

/* "kexec_load": what was loaded; "background": true while the load may still be running. */
static void jw_kexec_load(struct jw *w, const struct kexec_load_job *j)
{
	jw_key(w, "kexec_load");
	jw_open(w, '{');
	jw_kbool(w, "ok", true);
	jw_kbool(w, "background", j->in_background);
	jw_kstr(w, "kernel", j->k->kernel);
	jw_kstr(w, "initrd", j->k->initrd);
	jw_kstr(w, "cmdline", j->cmdline);
	jw_ku64(w, "flags", j->flags);
	jw_close(w, '}');
}

void kexec_load(struct jw *w, const struct kexec_opts *k)
{
	struct kexec_load_job j = { 0 };
	prepare_load(&j, k);
	run_load(&j);
	g_ms.kexec_load += j.ms;
	if (j.err)
		fail_load(&j);
	jw_kexec_load(w, &j);
}

/*
 * A held agent (--wait) loads the next kernel on a thread of its own, started before it makes
 * any memfd: kexec_file_load only records where KHO's FDT and scratch areas are
 * (kho_fill_kimage), so what is preserved after it still travels; and the 0.2-0.4 s it takes
 * under TCG (reading and copying a 10-24 MB kernel) overlaps the fills, the preservation and
 * the host's checks. The "kexec" line waits for it, and fails as a load would.
 */
static struct kexec_load_job g_load;

void start_background_load(const struct kexec_opts *k)
{
	prepare_load(&g_load, k);
	int err = pthread_create(&g_load.thread, NULL, run_load, &g_load);
	if (err)
		fail("pthread_create", err, "start the kexec load");
	g_load.in_background = true;
}

/* Waits for the background load, if any; false when it failed (g_load.err says why). */
bool background_load_done(void)
{
	if (g_load.in_background) {
		pthread_join(g_load.thread, NULL);
		g_load.in_background = false;
	}
	return g_load.err == 0;
}

/* The kernel log line that starts the old kernel's shutdown (kho bench handover's "shutdown"
 * phase ends at "kexec_core: Starting new kernel"). */
#define REBOOT_MARK "kho-agent: reboot(KEXEC)\n"

/* Returns only on failure, with errno set. */
void reboot_kexec(void)
{
	sync();
	int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, REBOOT_MARK, sizeof(REBOOT_MARK) - 1) < 0) {
			/* the mark is for timing only */
		}
		close(fd);
	}
	errno = 0;
	syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_KEXEC, NULL);
}

void fail_background_load(void)
{
	fail_load(&g_load);
}

void report_kexec_load(struct jw *w, const struct kexec_opts *k)
{
	if (g_load.in_background)
		jw_kexec_load(w, &g_load);
	else if (k->kernel)
		kexec_load(w, k);
	else {
		jw_key(w, "kexec_load");
		jw_null(w);
	}
}
