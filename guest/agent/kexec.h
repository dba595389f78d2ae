/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kexec_file_load of the next kernel, in the foreground or (for a held agent) on a thread of
 * its own, and reboot(LINUX_REBOOT_CMD_KEXEC).
 */
#ifndef KHO_AGENT_KEXEC_H
#define KHO_AGENT_KEXEC_H

#include <stdbool.h>

#include "args.h"
#include "json.h"

/* Loads the kernel now and reports "kexec_load"; fails the command if the load fails. */
void kexec_load(struct jw *w, const struct kexec_opts *k);
/* Opens the files (a bad path fails at once), then loads on a thread of its own. */
void start_background_load(const struct kexec_opts *k);
/* "kexec_load" of preserve and restore: the background load's, else a load now, else null. */
void report_kexec_load(struct jw *w, const struct kexec_opts *k);
/* Waits for the background load, if any; false when it failed. */
bool background_load_done(void);
/* Fails the command with the background load's error (step "kexec_file_load"). */
__attribute__((noreturn)) void fail_background_load(void);
/* Returns only on failure, with errno set. */
void reboot_kexec(void);

#endif
