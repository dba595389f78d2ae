// SPDX-License-Identifier: GPL-2.0
/*
 * The guest's /init: /init is kho-agent (a link to it, or the binary itself when the image's
 * usr lives on the next-kernel disk), which runs this as PID 1. One
 * process instead of a shell script and its children, because under TCG every process start
 * costs 10-40 ms in every boot of every scenario (the script it replaces took 0.4 s from
 * "Run /init" to the ready line, 0.13 s of it the shell's own start).
 *
 * The steps: mount what /etc/fstab lists; then, side by side, make the applet links if the
 * image has none, start dropbear, and (in this process) name the host, bring up the network if
 * the kernel's ip= did not and mount the harness's "next kernel" disk at /boot (first of all
 * when that disk carries usr: busybox, dropbear and their libraries); once all are
 * done, print the ready line the host waits for, with where init's time went (init_ms). Then a
 * shell on the console, and reaping orphans forever. Markers go through /dev/kmsg: a printk record reaches the serial
 * console whole, while a write to the console can be cut by a kernel line printed meanwhile.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mntent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

static void say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n = snprintf(line, sizeof(line), "KHO-GUEST: ");
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fd = dup(STDOUT_FILENO);
	if (fd >= 0) {
		if (write(fd, line, (size_t)n) < 0) {
			/* nowhere left to say it */
		}
		close(fd);
	}
}

/* Starts `path` with argv, stderr to `err` when given; returns its pid (-1: no start). */
static pid_t start_program(const char *path, const char *err, char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		if (err) {
			int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
			if (fd >= 0)
				dup2(fd, STDERR_FILENO);
		}
		execv(path, argv);
		_exit(127);
	}
	return pid;
}

static pid_t start(const char *err, char *const argv[])
{
	return start_program(argv[0], err, argv);
}

/* Waits for a child of start(); returns its exit status (-1: not started or killed). */
static int finish(pid_t pid)
{
	int status;
	if (pid < 0)
		return -1;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int run(const char *err, char *const argv[])
{
	return finish(start(err, argv));
}

/* fstab's options: the generic flags mount(2) takes as flags, the rest as the fs's data. */
static unsigned long mount_flags(const char *opts, char *data, size_t len)
{
	static const struct {
		const char *name;
		unsigned long flag;
	} FLAGS[] = { { "ro", MS_RDONLY }, { "nosuid", MS_NOSUID }, { "nodev", MS_NODEV },
		      { "noexec", MS_NOEXEC }, { "noatime", MS_NOATIME }, { "relatime", MS_RELATIME } };
	unsigned long flags = 0;
	char copy[256];
	snprintf(copy, sizeof(copy), "%s", opts);
	data[0] = '\0';
	for (char *save, *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		bool known = !strcmp(o, "defaults") || !strcmp(o, "rw");
		for (size_t i = 0; i < sizeof(FLAGS) / sizeof(FLAGS[0]); i++)
			if (!strcmp(o, FLAGS[i].name)) {
				flags |= FLAGS[i].flag;
				known = true;
			}
		if (!known && strlen(data) + strlen(o) + 2 < len) {
			if (data[0])
				strcat(data, ",");
			strcat(data, o);
		}
	}
	return flags;
}

/* As `mount -a`, making each mount point first (devpts needs /dev/pts on the new devtmpfs). */
static void mount_fstab(void)
{
	FILE *f = setmntent("/etc/fstab", "re");
	if (!f) {
		say("no /etc/fstab: %s", strerror(errno));
		return;
	}
	for (struct mntent *e; (e = getmntent(f)) != NULL;) {
		char data[256];
		unsigned long flags = mount_flags(e->mnt_opts, data, sizeof(data));
		mkdir(e->mnt_dir, 0755);
		if (mount(e->mnt_fsname, e->mnt_dir, e->mnt_type, flags, data[0] ? data : NULL) &&
		    errno != ENODEV) /* a filesystem this kernel lacks (tracefs) is not an error */
			say("mount %s on %s: %s", e->mnt_type, e->mnt_dir, strerror(errno));
	}
	endmntent(f);
}

/* The kernel's ip= configured eth0 (QEMU's user network); without CONFIG_IP_PNP, do it here. */
static void ensure_network(void)
{
	char line[256];
	bool has_default = false;
	FILE *f = fopen("/proc/net/route", "re");
	while (f && fgets(line, sizeof(line), f)) {
		char iface[32], dest[16];
		if (sscanf(line, "%31s %15s", iface, dest) == 2 && !strcmp(dest, "00000000"))
			has_default = true;
	}
	if (f)
		fclose(f);
	if (has_default)
		return;
	static char *const steps[][8] = {
		{ "/bin/busybox", "ip", "link", "set", "lo", "up", NULL },
		{ "/bin/busybox", "ip", "link", "set", "eth0", "up", NULL },
		{ "/bin/busybox", "ip", "addr", "add", "10.0.2.15/24", "dev", "eth0", NULL },
		{ "/bin/busybox", "ip", "route", "add", "default", "via", "10.0.2.2", NULL },
	};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		run(NULL, steps[i]);
}

/*
 * romfs reads its disk 1 KiB at a time, each read waited for (sb_bread): under TCG starting
 * dropbear took 0.7 s more than from ext4, and the kexec's read of the next kernel 0.8 s more
 * (5,000 requests). Reading the whole disk once, in 1 MiB requests (0.15 s for 11 MiB),
 * leaves it in the block device's page cache, where romfs then finds every block.
 */
static void read_whole_disk(const char *dev)
{
	int fd = open(dev, O_RDONLY | O_CLOEXEC);
	char *buf = malloc(1 << 20);
	ssize_t n = 0;
	while (fd >= 0 && buf && (n = read(fd, buf, 1 << 20)) > 0)
		;
	if (fd < 0 || !buf || n < 0)
		say("%s: reading the disk ahead: %s", dev, strerror(errno));
	free(buf);
	if (fd >= 0)
		close(fd);
}

/*
 * The harness's next-kernel disk (virtio-blk, serial kho-next): a romfs or ext4 image
 * mounted read-only at /boot, or a tar unpacked there when the kernel has neither built in.
 */
static void mount_next_kernel(void)
{
	DIR *d = opendir("/sys/block");
	for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
		char path[300], serial[64], dev[300];
		if (strncmp(e->d_name, "vd", 2))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/serial", e->d_name);
		if (!read_text(path, serial, sizeof(serial)) || strcmp(serial, "kho-next"))
			continue;
		snprintf(dev, sizeof(dev), "/dev/%s", e->d_name);
		/* Programs run from this disk when it carries usr: fewer, larger reads under TCG. */
		snprintf(path, sizeof(path), "/sys/block/%s/queue/read_ahead_kb", e->d_name);
		int ra = open(path, O_WRONLY | O_CLOEXEC);
		if (ra >= 0) {
			if (write(ra, "4096", 4) != 4)
				say("%s: %s", path, strerror(errno));
			close(ra);
		}
		static const char *const types[] = { "romfs", "ext4" };
		const char *mounted = NULL;
		int why = 0;
		for (size_t t = 0; !mounted && t < sizeof(types) / sizeof(types[0]); t++) {
			if (!mount(dev, "/boot", types[t], MS_RDONLY | MS_NOATIME, NULL))
				mounted = types[t];
			else if (!why || errno != EINVAL)
				why = errno; /* EINVAL: not this filesystem; ENODEV: not built in */
		}
		if (mounted) {
			if (!strcmp(mounted, "romfs"))
				read_whole_disk(dev);
			say("next kernel on /boot (%s)", mounted);
		} else {
			char *const tar[] = { "/bin/busybox", "tar", "-xf", dev, "-C", "/boot", NULL };
			if (run(NULL, tar) == 0)
				say("next kernel in /boot");
			else
				say("the next-kernel disk %s neither mounts as romfs or ext4 (%s) nor unpacks",
				    dev, strerror(why));
		}
	}
	if (d)
		closedir(d);
}

/* The key overlay's cpio already gives these modes; dropbear refuses keys others could read. */
static void private_keys(void)
{
	static const char *const paths[] = { "/root", "/root/.ssh", "/root/.ssh/authorized_keys",
					     "/etc/dropbear" };
	struct stat st;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (!stat(paths[i], &st))
			chmod(paths[i], st.st_mode & 07700);
	DIR *d = opendir("/etc/dropbear");
	for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
		char path[300];
		snprintf(path, sizeof(path), "/etc/dropbear/%s", e->d_name);
		if (e->d_name[0] != '.' && !stat(path, &st))
			chmod(path, st.st_mode & 07700);
	}
	if (d)
		closedir(d);
}

/*
 * Where this boot's kernel text starts (`_text`, moved by KASLR), from the first lines of
 * /proc/kallsyms (the read costs well under a millisecond): the host needs it to name the
 * functions a hung guest's vCPUs sit in, and to find machine_kexec for the handover pause,
 * against the build's System.map. arm64 lists no `_text` there, so `_stext` stands in:
 * "text=ADDR" or "stext=ADDR", "text=?" when hidden (kptr_restrict) or not found.
 */
static void kernel_text(char *out, size_t len)
{
	static const char *const anchors[] = { "_text", "_stext" };
	char buf[1024];
	snprintf(out, len, "text=?");
	int fd = open("/proc/kallsyms", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (size_t a = 0; a < sizeof(anchors) / sizeof(anchors[0]); a++) {
		char want[16];
		snprintf(want, sizeof(want), " T %s\n", anchors[a]);
		for (char *line = buf, *sym; (sym = strstr(line, want)) != NULL; line = sym + 1) {
			char *start = sym;
			while (start > buf && start[-1] != '\n')
				start--;
			if (sym - start < 8 || strspn(start, "0") >= (size_t)(sym - start))
				continue;
			snprintf(out, len, "%s=%.*s", anchors[a] + 1, (int)(sym - start), start);
			return;
		}
	}
}

/*
 * ms since boot (CLOCK_BOOTTIME: close to the printk timestamps, not the same clock), for the
 * ready line's account of where init's time went.
 */
static long boot_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_BOOTTIME, &t);
	return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int guest_init(void)
{
	char boot_id[64] = "", cmdline[4096] = "", spaced[4100];
	long t_start = boot_ms();

	setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
	setenv("HOME", "/root", 1);
	mount_fstab();
	read_text("/proc/sys/kernel/random/boot_id", boot_id, sizeof(boot_id));
	read_text("/proc/cmdline", cmdline, sizeof(cmdline));
	say("init boot_id=%s", boot_id);
	/* An image whose usr lives on the next-kernel disk (src/image/initramfs.ts, "disk"
	 * placement) has no dropbear until that disk is mounted: mount it first then. */
	bool usr_on_disk = access("/usr/sbin/dropbear", X_OK) != 0;
	if (usr_on_disk)
		mount_next_kernel();
	long t_mounts = boot_ms();

	/*
	 * The image carries busybox's applet links; only an image whose busybox applet table the
	 * host could not read lacks them (no /bin/sh), and then busybox makes them here. That and
	 * sshd start in parallel with the rest (the guest has two CPUs): under TCG each takes
	 * 0.1-0.2 s, most of it the process start.
	 */
	char *const install[] = { "/bin/busybox", "--install", "-s", NULL };
	pid_t links = access("/bin/sh", X_OK) == 0 ? -1 : start(NULL, install);
	private_keys();
	/* kho_guest.no_ssh leaves sshd out (the harness's test of a guest whose SSH never comes
	 * up); the kernel ignores a dotted parameter no module claims. */
	snprintf(spaced, sizeof(spaced), " %s ", cmdline);
	bool no_ssh = strstr(spaced, " kho_guest.no_ssh ") != NULL;
	/*
	 * dropbear re-executes itself for every connection (fresh ASLR) when it can open its own
	 * argv[0]; under TCG that exec and its dynamic linking delay the server's first word (TCP
	 * connect to version string 165 -> 120 ms). A bare argv[0] it cannot open (there is no
	 * /dropbear) makes it fork only.
	 */
	char *const dropbear[] = { "dropbear", "-R", "-E", "-s", "-p", "22", "-r",
				   "/etc/dropbear/dropbear_ed25519_host_key", "-P", "/run/dropbear.pid", NULL };
	/* dropbear forks into the background once it listens: its exit means sshd is up */
	pid_t sshd = no_ssh ? -1 : start_program("/usr/sbin/dropbear", "/tmp/dropbear.log", dropbear);
	if (sethostname("kho-guest", 9))
		say("sethostname: %s", strerror(errno));
	ensure_network();
	if (!usr_on_disk)
		mount_next_kernel();
	long t_own = boot_ms();
	finish(links);
	long t_links = boot_ms();
	if (no_ssh) {
		say("dropbear not started (kho_guest.no_ssh)");
	} else {
		int status = finish(sshd);
		if (status != 0)
			say("dropbear exited %d (/tmp/dropbear.log)", status);
	}
	long t_ready = boot_ms();
	/* Where init's time went, ms: the parallel steps end at "own" (network, next kernel),
	 * "links" and "sshd", each counted from the end of the one before. */
	char text[32];
	kernel_text(text, sizeof(text));
	say("ready boot_id=%s init_ms=start:%ld,mounts:%ld,own:%ld,links:%ld,sshd:%ld %s", boot_id,
	    t_start, t_mounts - t_start, t_own - t_mounts, t_links - t_own, t_ready - t_links, text);

	/* A shell on the console helps when debugging interactively. */
	if (fork() == 0) {
		char *const shell[] = { "/bin/busybox", "sh", "-c",
					"while true; do setsid cttyhack sh -l </dev/console >/dev/console 2>&1 || sleep 1; done",
					NULL };
		execv(shell[0], shell);
		_exit(127);
	}
	/* PID 1 adopts every orphan (dropbear's sessions among them): reap them. */
	for (;;)
		if (wait(NULL) < 0 && errno == ECHILD)
			sleep(1);
}
