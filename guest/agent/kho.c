// SPDX-License-Identifier: GPL-2.0-only
/* KHO's state for --kho-state (kho.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "kho.h"

#ifndef KHO_DEBUGFS
#define KHO_DEBUGFS "/sys/kernel/debug/kho" /* tests build with a stand-in directory */
#endif

/* The whole file as base64 under `key` (null when it cannot be read): debugfs blobs are binary. */
static void jw_kfile_base64(struct jw *w, const char *key, const char *path)
{
	static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	jw_key(w, key);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		jw_null(w);
		return;
	}
	size_t len = 0, cap = 1 << 16;
	uint8_t *data = xcalloc(1, cap);
	for (;;) {
		if (len == cap) {
			data = realloc(data, cap *= 2);
			if (!data)
				fail("alloc", ENOMEM, "%s", path);
		}
		ssize_t r = read(fd, data + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			close(fd);
			free(data);
			jw_null(w);
			return;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	char *out = xcalloc(1, (len + 2) / 3 * 4 + 1), *o = out;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0) |
			     (i + 2 < len ? data[i + 2] : 0);
		*o++ = B64[v >> 18 & 63];
		*o++ = B64[v >> 12 & 63];
		*o++ = i + 1 < len ? B64[v >> 6 & 63] : '=';
		*o++ = i + 2 < len ? B64[v & 63] : '=';
	}
	*o = '\0';
	jw_str(w, out);
	free(out);
	free(data);
}

/*
 * --kho-state: what the host's own decoding of the handover reads, in this call instead of one
 * SSH round trip more: KHO's root FDTs (out/fdt in a cold-booted kernel, in/fdt after a kexec)
 * and the top-level "System RAM" lines of /proc/iomem (real addresses: the agent runs as root).
 */
void jw_kho_state(struct jw *w)
{
	jw_key(w, "kho");
	jw_open(w, '{');
	jw_kfile_base64(w, "out_fdt", KHO_DEBUGFS "/out/fdt");
	jw_kfile_base64(w, "in_fdt", KHO_DEBUGFS "/in/fdt");
	jw_key(w, "system_ram");
	FILE *f = fopen("/proc/iomem", "re");
	char line[256], ram[8192] = "";
	size_t used = 0;
	while (f && fgets(line, sizeof(line), f))
		if (line[0] != ' ' && strstr(line, " : System RAM\n") && used + strlen(line) < sizeof(ram))
			used += (size_t)snprintf(ram + used, sizeof(ram) - used, "%s", line);
	if (f)
		fclose(f);
	jw_str(w, ram);
	jw_close(w, '}');
}
