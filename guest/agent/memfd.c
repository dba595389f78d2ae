// SPDX-License-Identifier: GPL-2.0-only
/* memfd creation, filling and inspection (memfd.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/mempolicy.h>

#include "agent.h"
#include "error.h"
#include "memfd.h"
#include "pattern.h"
#include "sha256.h"

/* /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h). */
enum {
	KPF_UPTODATE_BIT = 3,
	KPF_DIRTY_BIT = 4,
	KPF_LRU_BIT = 5,
	KPF_COMPOUND_HEAD_BIT = 15,
	KPF_COMPOUND_TAIL_BIT = 16,
	KPF_HUGE_BIT = 17,
	KPF_THP_BIT = 22,
};

#define PAGEMAP_PRESENT (1ULL << 63)
#define PAGEMAP_PFN_MASK ((1ULL << 55) - 1)
#define IO_CHUNK (1u << 20)

static void write_all(int fd, const uint8_t *p, size_t n, const char *step)
{
	while (n) {
		ssize_t r = write(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			fail(step, r < 0 ? errno : EIO, "write of %zu bytes", n);
		p += r, n -= (size_t)r;
	}
}

static uint64_t pmd_size(void)
{
	char buf[32];
	uint64_t v;
	if (read_text("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", buf, sizeof(buf)) &&
	    parse_u64(buf, &v) && v)
		return v;
	return 2u << 20;
}

/* A MAP_SHARED view of the memfd; with thp, PMD-aligned and MADV_HUGEPAGE so faults may use THPs. */
static uint8_t *map_memfd(int fd, uint64_t len, int prot, bool thp)
{
	if (!thp) {
		void *p = mmap(NULL, len, prot, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			fail("mmap", errno, "mmap of %" PRIu64 " bytes", len);
		return p;
	}
	uint64_t align = pmd_size();
	uint8_t *area = mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (area == MAP_FAILED)
		fail("mmap", errno, "reserve %" PRIu64 " bytes", len + align);
	uint8_t *start = (uint8_t *)(((uintptr_t)area + align - 1) & ~(uintptr_t)(align - 1));
	if (mmap(start, len, prot, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
		fail("mmap", errno, "aligned mmap of %" PRIu64 " bytes", len);
	if (start > area)
		munmap(area, (size_t)(start - area));
	uint64_t tail = (uint64_t)(area + len + align - (start + len));
	if (tail)
		munmap(start + len, tail);
	if (madvise(start, len, MADV_HUGEPAGE))
		fail("madvise", errno, "MADV_HUGEPAGE");
	return start;
}

static void fill_by_write(const struct memfd_spec *m, uint64_t end)
{
	uint8_t *buf = xcalloc(1, IO_CHUNK);
	for (uint64_t o = 0; o < end;) {
		uint64_t page = o / g_page_size;
		if (!page_written(m, page)) {
			o = (page + 1) * g_page_size;
			continue;
		}
		/* a whole chunk when every page is written, else one page at a time */
		uint64_t next = m->sparse > 1 ? (page + 1) * g_page_size : o + IO_CHUNK;
		if (next > end)
			next = end;
		pattern_fill(m->seed, o, buf, (size_t)(next - o));
		if (lseek(m->fd, (off_t)o, SEEK_SET) < 0)
			fail("lseek", errno, "lseek to %" PRIu64, o);
		write_all(m->fd, buf, (size_t)(next - o), "write");
		o = next;
	}
	free(buf);
}

static void fill_by_mmap(const struct memfd_spec *m, uint64_t end)
{
	if (!end)
		return;
	uint8_t *map = map_memfd(m->fd, end, PROT_READ | PROT_WRITE, m->thp);
	for (uint64_t o = 0; o < end; o += g_page_size) {
		uint64_t n = end - o < g_page_size ? end - o : g_page_size;
		if (page_written(m, o / g_page_size))
			pattern_fill(m->seed, o, map + o, (size_t)n);
	}
	munmap(map, end);
}

/* The task's memory policy: MPOL_BIND to `node`, or back to the default (node < 0). */
static void bind_to_node(int node)
{
	unsigned long mask = node >= 0 ? 1UL << node : 0;
	if (node >= (int)(8 * sizeof(mask)))
		fail("set_mempolicy", EINVAL, "node %d", node);
	if (syscall(SYS_set_mempolicy, node >= 0 ? MPOL_BIND : MPOL_DEFAULT, node >= 0 ? &mask : NULL,
		    node >= 0 ? 8 * sizeof(mask) : 0))
		fail("set_mempolicy", errno, "set_mempolicy(%s node %d)", node >= 0 ? "MPOL_BIND" : "MPOL_DEFAULT", node);
}

/* Creates and fills the memfd the spec describes; sealing comes last. */
void create_memfd(struct memfd_spec *m)
{
	char name[48];
	snprintf(name, sizeof(name), "kho-agent-%" PRIu64, m->token);
	m->fd = memfd_create(name, MFD_CLOEXEC | (m->seals ? MFD_ALLOW_SEALING : 0) | (m->hugetlb ? MFD_HUGETLB : 0));
	if (m->fd < 0)
		fail("memfd_create", errno, "memfd_create(%s)", name);
	uint64_t end = fill_end(m);
	if (ftruncate(m->fd, (off_t)end))
		fail("ftruncate", errno, "ftruncate to %" PRIu64, end);
	/* shmem takes new pages under the task's policy (the inode has no shared policy) */
	if (m->has_node)
		bind_to_node(m->node);
	if (m->fallocate && end && fallocate(m->fd, 0, 0, (off_t)end))
		fail("fallocate", errno, "fallocate of %" PRIu64 " bytes", end);
	if (m->mmap_fill)
		fill_by_mmap(m, end);
	else
		fill_by_write(m, end);
	if (m->has_node)
		bind_to_node(-1);
	if (m->has_truncate) {
		if (ftruncate(m->fd, (off_t)data_end(m)) || ftruncate(m->fd, (off_t)m->size))
			fail("truncate", errno, "ftruncate %" PRIu64 " -> %" PRIu64, end, m->size);
	}
	if (m->has_pos && lseek(m->fd, (off_t)m->pos, SEEK_SET) < 0)
		fail("lseek", errno, "lseek to pos %" PRIu64, m->pos);
	if (m->seals && fcntl(m->fd, F_ADD_SEALS, m->seals))
		fail("seal", errno, "F_ADD_SEALS 0x%x", m->seals);
}

/* Writes after PRESERVE_FD: the kernel preserves pages in place, so these must carry over. */
void rewrite_memfd(const struct memfd_spec *m)
{
	uint8_t *buf = xcalloc(1, g_page_size);
	uint64_t live = data_end(m);
	for (uint64_t page = 0; page * g_page_size < live; page++) {
		if (!page_written(m, page))
			continue;
		uint64_t o = page * g_page_size, n = live - o < g_page_size ? live - o : g_page_size;
		pattern_fill(m->rewrite_seed, o, buf, (size_t)n);
		if (pwrite(m->fd, buf, (size_t)n, (off_t)o) != (ssize_t)n)
			fail("rewrite", errno, "pwrite at %" PRIu64, o);
	}
	free(buf);
}

static void jw_outcome(struct jw *w, const char *key, int ret)
{
	jw_kstr(w, key, ret == 0 ? "ok" : errname(errno));
}

/*
 * A preserved memfd is frozen: size changes must fail with EPERM, writes inside the size must
 * work. Each probe that unexpectedly succeeds is undone, so the contents stay as they were.
 */
void probe_freeze(struct jw *w, int fd)
{
	struct stat st;
	uint8_t first = 0, last = 0;
	if (fstat(fd, &st))
		fail("fstat", errno, "fstat");
	off_t size = st.st_size;
	if (size && (pread(fd, &first, 1, 0) != 1 || pread(fd, &last, 1, size - 1) != 1))
		fail("freeze_probe", errno, "pread");
	jw_key(w, "freeze_probe");
	jw_open(w, '{');
	int r = ftruncate(fd, size + (off_t)g_page_size);
	jw_outcome(w, "ftruncate_grow", r);
	if (r == 0 && ftruncate(fd, size))
		fail("freeze_probe", errno, "undo ftruncate");
	if (size) {
		r = ftruncate(fd, size - 1);
		jw_outcome(w, "ftruncate_shrink", r);
		if (r == 0 && (ftruncate(fd, size) || pwrite(fd, &last, 1, size - 1) != 1))
			fail("freeze_probe", errno, "undo shrink");
	}
	r = pwrite(fd, &last, 1, size) == 1 ? 0 : -1;
	jw_outcome(w, "write_past_eof", r);
	if (r == 0 && ftruncate(fd, size))
		fail("freeze_probe", errno, "undo write past EOF");
	r = fallocate(fd, 0, size, (off_t)g_page_size);
	jw_outcome(w, "fallocate_past_eof", r);
	if (r == 0 && ftruncate(fd, size))
		fail("freeze_probe", errno, "undo fallocate");
	if (size) {
		r = pwrite(fd, &first, 1, 0) == 1 ? 0 : -1;
		jw_outcome(w, "write_inside", r);
	}
	jw_close(w, '}');
}

/*
 * The contents: their SHA-256 (unless nohash) and, with `check`, the first byte that differs
 * from the model of the spec. Without a hash the check alone vouches for the bytes: it costs
 * one pattern word per 8 bytes, where SHA-256 of 256 MiB takes seconds under TCG.
 */
void report_contents(struct jw *w, const struct memfd_spec *m, uint64_t size, bool check)
{
	if (m->noread) {
		jw_key(w, "sha256");
		jw_null(w);
		return;
	}
	uint8_t *buf = xcalloc(1, IO_CHUNK), *want = check ? xcalloc(1, IO_CHUNK) : NULL;
	struct sha256 got, exp;
	char hex[65];
	int64_t mismatch = -1;
	bool hash = !m->nohash;

	sha256_init(&got);
	for (uint64_t o = 0; o < size;) {
		size_t n = size - o < IO_CHUNK ? (size_t)(size - o) : IO_CHUNK;
		ssize_t r = pread(m->fd, buf, n, (off_t)o);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			fail("pread", r < 0 ? errno : EIO, "pread at %" PRIu64, o);
		if (hash)
			sha256_update(&got, buf, (size_t)r);
		if (check && mismatch < 0 && o < m->size) {
			size_t cmp = m->size - o < (uint64_t)r ? (size_t)(m->size - o) : (size_t)r;
			expected_fill(m, o, want, cmp);
			if (memcmp(buf, want, cmp) != 0)
				for (size_t i = 0; i < cmp; i++)
					if (buf[i] != want[i]) {
						mismatch = (int64_t)(o + i);
						break;
					}
		}
		o += (uint64_t)r;
	}
	jw_key(w, "sha256");
	if (hash) {
		sha256_hex(&got, hex);
		jw_str(w, hex);
	} else {
		jw_null(w);
	}
	if (check) {
		if (mismatch < 0 && size != m->size)
			mismatch = (int64_t)(size < m->size ? size : m->size);
		/* Every byte matched and the size too: the model's hash is the file's (none under
		 * nohash). A second SHA-256 pass over the model costs as much as the first, so it is
		 * made only for the evidence of a mismatch. */
		if (mismatch >= 0) {
			sha256_init(&exp);
			for (uint64_t o = 0; o < m->size;) {
				size_t n = m->size - o < IO_CHUNK ? (size_t)(m->size - o) : IO_CHUNK;
				expected_fill(m, o, want, n);
				sha256_update(&exp, want, n);
				o += n;
			}
			sha256_hex(&exp, hex);
		}
		jw_key(w, "expected");
		jw_open(w, '{');
		jw_ku64(w, "size", m->size);
		jw_key(w, "sha256");
		if (hash || mismatch >= 0)
			jw_str(w, hex);
		else
			jw_null(w);
		jw_kbool(w, "match", mismatch < 0);
		jw_key(w, "first_mismatch");
		if (mismatch < 0)
			jw_null(w);
		else
			jw_i64(w, mismatch);
		jw_close(w, '}');
	}
	free(buf);
	free(want);
}

/* Runs of the PFN list: [start, count] for physically contiguous pages, [null, count] for absent ones. */
static void jw_pfn_runs(struct jw *w, const uint64_t *pfn, const bool *present, uint64_t pages)
{
	jw_open(w, '[');
	for (uint64_t i = 0; i < pages;) {
		uint64_t j = i + 1;
		if (present[i])
			while (j < pages && present[j] && pfn[j] == pfn[j - 1] + 1)
				j++;
		else
			while (j < pages && !present[j])
				j++;
		jw_open(w, '[');
		if (present[i])
			jw_u64(w, pfn[i]);
		else
			jw_null(w);
		jw_u64(w, j - i);
		jw_close(w, ']');
		i = j;
	}
	jw_close(w, ']');
}

/* Page flags of the frames (root only): counts, plus the folio sizes in file order. */
static void jw_kpageflags(struct jw *w, const uint64_t *pfn, const bool *present, uint64_t pages)
{
	int fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	jw_key(w, "kpageflags");
	if (fd < 0) {
		jw_null(w);
		jw_kstr(w, "kpageflags_error", errname(errno));
		return;
	}
	uint64_t n_head = 0, n_tail = 0, n_thp = 0, n_huge = 0, n_dirty = 0, n_uptodate = 0, n_lru = 0;
	uint64_t *folio_hist = xcalloc(64, sizeof(uint64_t)); /* log2(pages) -> count; whole folios only */
	uint64_t folio_len = 0;
	for (uint64_t i = 0; i <= pages; i++) {
		uint64_t f = 0;
		bool tail = false;
		if (i < pages && present[i]) {
			if (pread(fd, &f, sizeof(f), (off_t)(pfn[i] * sizeof(f))) != (ssize_t)sizeof(f)) {
				int err = errno;
				close(fd);
				free(folio_hist);
				jw_null(w);
				jw_kstr(w, "kpageflags_error", errname(err ? err : EIO));
				return;
			}
			tail = f >> KPF_COMPOUND_TAIL_BIT & 1;
			n_head += f >> KPF_COMPOUND_HEAD_BIT & 1;
			n_tail += tail;
			n_thp += f >> KPF_THP_BIT & 1;
			n_huge += f >> KPF_HUGE_BIT & 1;
			n_dirty += f >> KPF_DIRTY_BIT & 1;
			n_uptodate += f >> KPF_UPTODATE_BIT & 1;
			n_lru += f >> KPF_LRU_BIT & 1;
		}
		/* a folio ends at anything that is not its tail; absent pages end it too */
		if (!tail && folio_len) {
			unsigned int order = 0;
			while ((1ULL << (order + 1)) <= folio_len)
				order++;
			folio_hist[order]++;
			folio_len = 0;
		}
		if (i < pages && present[i])
			folio_len++;
	}
	close(fd);
	jw_open(w, '{');
	jw_ku64(w, "compound_head", n_head);
	jw_ku64(w, "compound_tail", n_tail);
	jw_ku64(w, "thp", n_thp);
	jw_ku64(w, "huge", n_huge);
	jw_ku64(w, "dirty", n_dirty);
	jw_ku64(w, "uptodate", n_uptodate);
	jw_ku64(w, "lru", n_lru);
	jw_key(w, "folio_orders");
	jw_open(w, '{');
	for (unsigned int o = 0; o < 64; o++) {
		char key[8];
		if (!folio_hist[o])
			continue;
		snprintf(key, sizeof(key), "%u", o);
		jw_ku64(w, key, folio_hist[o]);
	}
	jw_close(w, '}');
	jw_close(w, '}');
	free(folio_hist);
}

/* "nodes": pages per NUMA node, as move_pages(2) without a target gives them (the guest's view). */
static void report_nodes(struct jw *w, const uint8_t *map, uint64_t pages)
{
	void **addr = xcalloc(pages, sizeof(void *));
	int *status = xcalloc(pages, sizeof(int));
	for (uint64_t i = 0; i < pages; i++)
		addr[i] = (void *)(map + i * g_page_size);
	if (syscall(SYS_move_pages, 0, (unsigned long)pages, addr, NULL, status, 0))
		fail("move_pages", errno, "move_pages of %" PRIu64 " pages", pages);
	jw_key(w, "nodes");
	jw_open(w, '{');
	for (int node = -64; node < 64; node++) {
		uint64_t n = 0;
		for (uint64_t i = 0; i < pages; i++)
			n += status[i] == node;
		if (!n)
			continue;
		char key[16];
		snprintf(key, sizeof(key), "%d", node); /* negative: an errno (-ENOENT: not present) */
		jw_ku64(w, key, n);
	}
	jw_close(w, '}');
	free(addr);
	free(status);
}

/* Maps the memfd, faults every page in, and reports its frames from /proc/self/pagemap. */
void report_pages(struct jw *w, const struct memfd_spec *m, uint64_t size)
{
	uint64_t pages = (size + g_page_size - 1) / g_page_size, n_present = 0;
	bool visible = false;
	jw_ku64(w, "page_size", g_page_size);
	jw_ku64(w, "pages", pages);
	if (!pages) {
		jw_ku64(w, "pages_present", 0);
		jw_key(w, "pfns");
		jw_open(w, '[');
		jw_close(w, ']');
		jw_key(w, "kpageflags");
		jw_null(w);
		return;
	}
	uint8_t *map = map_memfd(m->fd, size, PROT_READ, m->thp);
	for (uint64_t i = 0; i < pages; i++)
		(void)*(volatile uint8_t *)(map + i * g_page_size);

	uint64_t *pfn = xcalloc(pages, sizeof(uint64_t));
	bool *present = xcalloc(pages, sizeof(bool));
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm < 0)
		fail("pagemap", errno, "open /proc/self/pagemap");
	off_t base = (off_t)((uintptr_t)map / g_page_size * sizeof(uint64_t));
	for (uint64_t i = 0; i < pages;) {
		size_t n = pages - i < 65536 ? (size_t)(pages - i) : 65536;
		ssize_t r = pread(pm, pfn + i, n * sizeof(uint64_t), base + (off_t)(i * sizeof(uint64_t)));
		if (r <= 0 || r % (ssize_t)sizeof(uint64_t))
			fail("pagemap", r < 0 ? errno : EIO, "read /proc/self/pagemap");
		i += (uint64_t)r / sizeof(uint64_t);
	}
	close(pm);
	if (m->has_node)
		report_nodes(w, map, pages);
	munmap(map, size);
	for (uint64_t i = 0; i < pages; i++) {
		present[i] = pfn[i] & PAGEMAP_PRESENT;
		pfn[i] &= PAGEMAP_PFN_MASK;
		n_present += present[i];
		visible |= present[i] && pfn[i];
	}
	jw_ku64(w, "pages_present", n_present);
	jw_key(w, "pfns");
	if (visible || !n_present) {
		jw_pfn_runs(w, pfn, present, pages);
		jw_kpageflags(w, pfn, present, pages);
	} else {
		/* the kernel zeroes PFNs for readers without CAP_SYS_ADMIN */
		jw_null(w);
		jw_kstr(w, "pfn_error", "pagemap shows no PFNs (needs CAP_SYS_ADMIN)");
		jw_key(w, "kpageflags");
		jw_null(w);
	}
	free(pfn);
	free(present);
}

/* The fd's own state: size, position, seals, flags and /proc link. Returns the size. */
uint64_t report_file(struct jw *w, int fd)
{
	struct stat st;
	char path[64], link[256];
	if (fstat(fd, &st))
		fail("fstat", errno, "fstat fd %d", fd);
	jw_ki64(w, "fd", fd);
	jw_ku64(w, "size", (uint64_t)st.st_size);
	off_t pos = lseek(fd, 0, SEEK_CUR);
	jw_ki64(w, "pos", pos);
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0)
		fail("F_GET_SEALS", errno, "fcntl(F_GET_SEALS)");
	jw_seals(w, (unsigned int)seals);
	jw_ku64(w, "mode", st.st_mode & 07777);
	jw_ku64(w, "status_flags", (uint64_t)fcntl(fd, F_GETFL));
	jw_kbool(w, "cloexec", fcntl(fd, F_GETFD) & FD_CLOEXEC);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = '\0';
	jw_kstr(w, "link", n > 0 ? link : NULL);
	return (uint64_t)st.st_size;
}

void jw_fill_spec(struct jw *w, const struct memfd_spec *m)
{
	jw_key(w, "seed");
	jw_u64str(w, m->seed);
	jw_kstr(w, "fill", m->mmap_fill ? "mmap" : "write");
	jw_kbool(w, "thp", m->thp);
	jw_kbool(w, "hugetlb", m->hugetlb);
	jw_ku64(w, "sparse", m->sparse);
}
