/* SPDX-License-Identifier: GPL-2.0-only */
/* The command line: what it asks for (sessions, memfd specs, kexec options) and its parser. */
#ifndef KHO_AGENT_ARGS_H
#define KHO_AGENT_ARGS_H

#include <stdbool.h>
#include <stdint.h>

#include "json.h"

struct memfd_spec {
	uint64_t token;
	bool has_size; /* restore: a size (and options) were given, so contents are checked */
	uint64_t size;
	uint64_t seed;
	bool has_seed;
	bool mmap_fill;
	bool thp;
	uint64_t sparse; /* 0/1: every page; N: only pages whose index is a multiple of N */
	bool has_truncate;
	uint64_t truncate;
	bool has_pos;
	uint64_t pos;
	unsigned int seals;
	bool fallocate;
	bool has_rewrite;
	uint64_t rewrite_seed;
	bool probe_freeze;
	bool hugetlb; /* MFD_HUGETLB: filled through a mapping (hugetlbfs has no write()) */
	bool try_ioctl; /* a failed PRESERVE_FD / RETRIEVE_FD is reported, not fatal */
	bool nohash; /* no SHA-256 of the contents ("sha256":null): the model check alone */
	bool noread; /* contents not read at all ("sha256":null, no "expected"): the host reads the frames */
	bool has_node;
	int node; /* node=N: filled under MPOL_BIND to node N; "nodes" reports where the pages are */
	int fd; /* runtime */
	int ioctl_err; /* runtime: errno of a failed PRESERVE_FD / RETRIEVE_FD under try */
};

struct session_spec {
	const char *name;
	struct memfd_spec *memfds;
	size_t n_memfds;
	uint64_t *probe_tokens; /* restore --after-finish: more tokens to try after FINISH */
	size_t n_probe_tokens;
	int fd; /* runtime */
};

struct kexec_opts {
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	bool reuse_cmdline;
	uint64_t extra_flags;
};

struct opts {
	struct session_spec *sessions;
	size_t n_sessions;
	struct kexec_opts kexec;
	bool wait, kexec_now, no_luo, finish, carry, load_only, after_finish, loaded, kho_state;
};

/* Unsigned integer: decimal or 0x hex (a leading 0 is not octal), with a binary K/M/G/T suffix. */
bool parse_u64(const char *s, uint64_t *out);

/* One parser for every command (argv[2] on); each command then rejects what it does not use. */
struct opts parse_opts(int argc, char **argv, bool need_size);

/* "seals":n,"seal_names":[...], by the names the seal= option takes. */
void jw_seals(struct jw *w, unsigned int seals);

#endif
