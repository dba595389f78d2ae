/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * memfds: making and filling them as a spec says, the freeze probe, and what is reported of
 * one: its file state, its contents (SHA-256 and the check against the pattern model) and its
 * page frames (/proc/self/pagemap, /proc/kpageflags).
 */
#ifndef KHO_AGENT_MEMFD_H
#define KHO_AGENT_MEMFD_H

#include <stdbool.h>
#include <stdint.h>

#include "args.h"
#include "json.h"

/* Creates and fills the memfd the spec describes (m->fd); sealing comes last. */
void create_memfd(struct memfd_spec *m);
/* Writes after PRESERVE_FD (rewrite=SEED): the kernel preserves pages in place, so these must carry over. */
void rewrite_memfd(const struct memfd_spec *m);
/* "freeze_probe": size changes and writes past EOF (EPERM while preserved), a write inside. */
void probe_freeze(struct jw *w, int fd);

/* "seed","fill","thp","hugetlb","sparse": how the spec fills the memfd. */
void jw_fill_spec(struct jw *w, const struct memfd_spec *m);
/* The fd's own state: size, position, seals, flags and /proc link. Returns the size. */
uint64_t report_file(struct jw *w, int fd);
/* "sha256" and, with `check`, "expected": the contents read back against the model. */
void report_contents(struct jw *w, const struct memfd_spec *m, uint64_t size, bool check);
/* Maps the memfd, faults every page in, and reports its frames from /proc/self/pagemap. */
void report_pages(struct jw *w, const struct memfd_spec *m, uint64_t size);

#endif
