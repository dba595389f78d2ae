// SPDX-License-Identifier: GPL-2.0-only
/* Argument parsing (args.h): numbers, seal names, memfd specs, the options of every command. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "args.h"
#include "error.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, hex ? 16 : 10);
	if (errno || end == s)
		return false;
	unsigned int shift = 0;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	case 'T': case 't': shift = 40; end++; break;
	default: break;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

static uint64_t need_u64(const char *what, const char *s)
{
	uint64_t v;
	if (!parse_u64(s, &v))
		usage_fail("%s: not a number: \"%s\"", what, s);
	return v;
}

static const struct {
	const char *name;
	unsigned int bit;
} SEALS[] = {
	{ "seal", F_SEAL_SEAL },   { "shrink", F_SEAL_SHRINK },		    { "grow", F_SEAL_GROW },
	{ "write", F_SEAL_WRITE }, { "future_write", F_SEAL_FUTURE_WRITE }, { "exec", F_SEAL_EXEC },
};

/* "shrink+grow", "F_SEAL_WRITE|F_SEAL_SEAL" or a number. */
static unsigned int parse_seals(const char *list)
{
	uint64_t num;
	if (parse_u64(list, &num))
		return (unsigned int)num;
	unsigned int seals = 0;
	char *copy = strdup(list), *save = NULL;
	for (char *tok = strtok_r(copy, "+|", &save); tok; tok = strtok_r(NULL, "+|", &save)) {
		const char *name = strncasecmp(tok, "F_SEAL_", 7) == 0 ? tok + 7 : tok;
		size_t i;
		for (i = 0; i < sizeof(SEALS) / sizeof(SEALS[0]); i++)
			if (strcasecmp(name, SEALS[i].name) == 0)
				break;
		if (i == sizeof(SEALS) / sizeof(SEALS[0]))
			usage_fail("unknown seal \"%s\" (seal, shrink, grow, write, future_write, exec)", tok);
		seals |= SEALS[i].bit;
	}
	free(copy);
	return seals;
}

void jw_seals(struct jw *w, unsigned int seals)
{
	jw_ku64(w, "seals", seals);
	jw_key(w, "seal_names");
	jw_open(w, '[');
	for (size_t i = 0; i < sizeof(SEALS) / sizeof(SEALS[0]); i++)
		if (seals & SEALS[i].bit)
			jw_str(w, SEALS[i].name);
	jw_close(w, ']');
}

static void parse_memfd_opt(struct memfd_spec *m, char *opt)
{
	char *val = strchr(opt, '=');
	if (val)
		*val++ = '\0';
	if (!strcmp(opt, "seed") && val)
		m->seed = need_u64("seed", val), m->has_seed = true;
	else if (!strcmp(opt, "write") && !val)
		m->mmap_fill = false;
	else if (!strcmp(opt, "mmap") && !val)
		m->mmap_fill = true;
	else if (!strcmp(opt, "thp") && !val)
		m->thp = true;
	else if (!strcmp(opt, "sparse") && val)
		m->sparse = need_u64("sparse", val);
	else if (!strcmp(opt, "truncate") && val)
		m->truncate = need_u64("truncate", val), m->has_truncate = true;
	else if (!strcmp(opt, "pos") && val)
		m->pos = need_u64("pos", val), m->has_pos = true;
	else if (!strcmp(opt, "seal") && val)
		m->seals |= parse_seals(val);
	else if (!strcmp(opt, "fallocate") && !val)
		m->fallocate = true;
	else if (!strcmp(opt, "rewrite") && val)
		m->rewrite_seed = need_u64("rewrite", val), m->has_rewrite = true;
	else if (!strcmp(opt, "probe-freeze") && !val)
		m->probe_freeze = true;
	else if (!strcmp(opt, "hugetlb") && !val)
		m->hugetlb = m->mmap_fill = true;
	else if (!strcmp(opt, "nohash") && !val)
		m->nohash = true;
	else if (!strcmp(opt, "noread") && !val)
		m->noread = m->nohash = true;
	else if (!strcmp(opt, "node") && val)
		m->node = (int)need_u64("node", val), m->has_node = true;
	else if (!strcmp(opt, "try") && !val)
		m->try_ioctl = true;
	else
		usage_fail("unknown memfd option \"%s\"", opt);
}

/* TOKEN[:SIZE[:opt,opt...]]; preserve requires the size. */
static struct memfd_spec parse_memfd(const char *arg, bool need_size)
{
	struct memfd_spec m = { .fd = -1 };
	char *copy = strdup(arg);
	char *size = strchr(copy, ':'), *opts = NULL;
	if (size) {
		*size++ = '\0';
		opts = strchr(size, ':');
		if (opts)
			*opts++ = '\0';
	}
	m.token = need_u64("memfd token", copy);
	if (size && *size) {
		m.size = need_u64("memfd size", size);
		m.has_size = true;
	} else if (need_size) {
		usage_fail("--memfd %s: expected TOKEN:SIZE[:opt,...]", arg);
	}
	char *save = NULL;
	for (char *opt = opts ? strtok_r(opts, ",", &save) : NULL; opt; opt = strtok_r(NULL, ",", &save))
		parse_memfd_opt(&m, opt);
	if (!m.has_seed)
		m.seed = m.token; /* distinct memfds differ without the caller choosing seeds */
	if (m.hugetlb)
		m.mmap_fill = true; /* whatever the option order: hugetlbfs files cannot be written */
	if (m.has_truncate && m.truncate == m.size)
		m.has_truncate = false;
	free(copy);
	return m;
}

static const char *need_arg(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc)
		usage_fail("%s needs a value", argv[*i]);
	return argv[++*i];
}

struct opts parse_opts(int argc, char **argv, bool need_size)
{
	struct opts o = { 0 };
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--session")) {
			o.sessions = realloc(o.sessions, (o.n_sessions + 1) * sizeof(*o.sessions));
			if (!o.sessions)
				fail("alloc", ENOMEM, "sessions");
			o.sessions[o.n_sessions++] = (struct session_spec){ .name = need_arg(argc, argv, &i), .fd = -1 };
		} else if (!strcmp(a, "--memfd")) {
			const char *spec = need_arg(argc, argv, &i);
			if (!o.n_sessions)
				usage_fail("--memfd %s comes before any --session", spec);
			struct session_spec *s = &o.sessions[o.n_sessions - 1];
			s->memfds = realloc(s->memfds, (s->n_memfds + 1) * sizeof(*s->memfds));
			if (!s->memfds)
				fail("alloc", ENOMEM, "memfds");
			s->memfds[s->n_memfds++] = parse_memfd(spec, need_size);
		} else if (!strcmp(a, "--probe-token")) {
			const char *tok = need_arg(argc, argv, &i);
			if (!o.n_sessions)
				usage_fail("--probe-token %s comes before any --session", tok);
			struct session_spec *s = &o.sessions[o.n_sessions - 1];
			s->probe_tokens = realloc(s->probe_tokens, (s->n_probe_tokens + 1) * sizeof(uint64_t));
			if (!s->probe_tokens)
				fail("alloc", ENOMEM, "probe tokens");
			s->probe_tokens[s->n_probe_tokens++] = need_u64("--probe-token", tok);
		} else if (!strcmp(a, "--kexec-kernel") || !strcmp(a, "--kernel")) {
			o.kexec.kernel = need_arg(argc, argv, &i);
		} else if (!strcmp(a, "--kexec-initrd") || !strcmp(a, "--initrd")) {
			o.kexec.initrd = need_arg(argc, argv, &i);
		} else if (!strcmp(a, "--cmdline")) {
			o.kexec.cmdline = need_arg(argc, argv, &i);
		} else if (!strcmp(a, "--reuse-cmdline")) {
			o.kexec.reuse_cmdline = true;
		} else if (!strcmp(a, "--kexec-flags")) {
			o.kexec.extra_flags = need_u64("--kexec-flags", need_arg(argc, argv, &i));
		} else if (!strcmp(a, "--wait")) {
			o.wait = true;
		} else if (!strcmp(a, "--kexec-now")) {
			o.kexec_now = true;
		} else if (!strcmp(a, "--no-luo")) {
			o.no_luo = true;
		} else if (!strcmp(a, "--finish")) {
			o.finish = true;
		} else if (!strcmp(a, "--carry")) {
			o.carry = o.finish = true;
		} else if (!strcmp(a, "--load-only")) {
			o.load_only = true;
		} else if (!strcmp(a, "--loaded")) {
			o.loaded = true;
		} else if (!strcmp(a, "--after-finish")) {
			o.after_finish = o.finish = true;
		} else if (!strcmp(a, "--kho-state")) {
			o.kho_state = true;
		} else {
			usage_fail("unknown argument \"%s\" for %s", a, g_command);
		}
	}
	if (o.kexec.cmdline && o.kexec.reuse_cmdline)
		usage_fail("--cmdline and --reuse-cmdline exclude each other");
	if ((o.kexec.initrd || o.kexec.cmdline || o.kexec.reuse_cmdline) && !o.kexec.kernel)
		usage_fail("--initrd/--cmdline/--reuse-cmdline need a kernel");
	return o;
}
