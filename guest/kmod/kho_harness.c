// SPDX-License-Identifier: GPL-2.0
/*
 * kho_harness - KHO test module for the kho-harness end-to-end tests.
 *
 * First kernel: "preserve" commands written to debugfs ctl allocate memory
 * of a chosen kind and order, fill it with a seeded pattern and preserve it
 * with KHO; "commit" records every entry in a "kho_harness" KHO subtree.
 *
 * Next kernel (after kexec): module load finds the subtree, restores every
 * entry with the API matching its kind, verifies the pattern, measures the
 * refcounts of the head and of every tail page and the compound state, then
 * frees or deliberately leaks each entry according to the free policy.  The
 * result is exposed as JSON in debugfs "report".
 *
 * Layout of the subtree (an FDT, every integer a native-endian u64, like
 * KHO's own properties):
 *
 *   / { compatible = "kho-harness-v1"; nr-entries;
 *       entry-N { kind = "folio"|"dma"|"split"|"dma-dev";
 *                 order; phys; seed; group; index; free;
 *                 pre-head-ref; pre-compound; pre-tail-refs; pre-tail-other;
 *                 pre-nid; dma-addr (dma-dev only); }; };
 *
 * pre-tail-refs is an array of (refcount, pages) u64 pairs measured in the
 * first kernel right after allocation.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/dma-mapping.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/kexec_handover.h>
#include <linux/libfdt.h>
#include <linux/memory_hotplug.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/platform_device.h>
#include <linux/reboot.h>
#include <linux/delay.h>
#include <linux/scatterlist.h>
#include <linux/sched.h>
#include <linux/seq_buf.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/string_choices.h>
#include <linux/uaccess.h>
#include <linux/unaligned.h>

/*
 * libfdt is linked into vmlinux (lib-y) but none of it is exported to
 * modules, so compile a private copy of the parts used here from the
 * kernel's own tree, the same way lib/fdt*.c do (Kbuild adds
 * -I$(srctree)/scripts/dtc/libfdt).
 */
#include "fdt.c"
#include "fdt_ro.c"
#include "fdt_sw.c"

#define KHOH_SUBTREE		"kho_harness"
#define KHOH_COMPAT		"kho-harness-v1"
#define KHOH_ABI_VERSION	1
/* The layout of union kho_page_info (kernel/liveupdate/kexec_handover.c) */
#define KHOH_PAGE_MAGIC		0x4b484f50U	/* "KHOP" */
#define KHOH_MAX_COUNT		1024
#define KHOH_MAX_ENTRIES	2048
#define KHOH_CTL_MAX		4096
#define KHOH_HIST_SLOTS		6
#define KHOH_GOLDEN		0x9e3779b97f4a7c15ULL
/* Blocks set aside while looking for one at or above min_phys. */
#define KHOH_MAX_REJECTS	4096

enum khoh_kind {
	KHOH_FOLIO,
	KHOH_DMA,
	KHOH_SPLIT,
	KHOH_DMA_DEV,
	KHOH_NR_KINDS,
};

static const char *const khoh_kind_names[KHOH_NR_KINDS] = {
	[KHOH_FOLIO] = "folio",
	[KHOH_DMA] = "dma",
	[KHOH_SPLIT] = "split",
	[KHOH_DMA_DEV] = "dma-dev",
};

enum khoh_free {
	KHOH_FREE_NO = 0,
	KHOH_FREE_YES = 1,
	KHOH_FREE_DEFAULT = 2,
};

/*
 * -1: per kind (folio and split are freed, dma and dma-dev are leaked),
 *  0: never free, 1: free everything.  A preserve command's own free=
 * overrides this for its entries.
 */
static int khoh_free_param = -1;
module_param_named(free, khoh_free_param, int, 0644);
MODULE_PARM_DESC(free,
		 "free restored blocks: -1 per kind (default), 0 never, 1 always (dma blocks included)");

/* Refcounts of a block: the head page, and a histogram of the others. */
struct khoh_refs {
	int head;
	bool compound;
	unsigned int nr;
	int val[KHOH_HIST_SLOTS];
	unsigned long cnt[KHOH_HIST_SLOTS];
	unsigned long other;
};

/* One allocation made in this kernel. */
struct khoh_block {
	struct page *page;
	phys_addr_t phys;
	void *cpu;		/* dma-dev: what dma_alloc_coherent returned */
	dma_addr_t dma;
	bool preserved;
	int nid;		/* page_to_nid() right after allocation */
	struct khoh_refs pre;
};

/* One "preserve" command. */
struct khoh_group {
	struct list_head node;
	u64 id;			/* position in khoh_groups, part of the pattern */
	enum khoh_kind kind;
	unsigned int order;
	unsigned int count;
	u64 seed;
	enum khoh_free free;
	int nid;		/* node= (NUMA_NO_NODE: the allocator's choice) */
	phys_addr_t min_phys;	/* min_phys=: every block at or above it */
	unsigned int rejected;	/* blocks below min_phys set aside and freed */
	int err;
	const char *step;
	const char *reason;
	unsigned int nr_blocks;	/* allocated and preserved */
	struct khoh_block blocks[] __counted_by(count);
};

/* What the next kernel found for one entry. */
struct khoh_result {
	enum khoh_kind kind;
	unsigned int order;
	u64 seed;
	u64 group;
	u64 index;
	phys_addr_t phys;
	u64 dma;
	enum khoh_free free;
	struct khoh_refs pre;
	bool have_pre;
	int pre_nid;		/* the node in the previous kernel, -1 unknown */
	int nid;		/* page_to_nid() after the restore */
	const char *zone;	/* its zone's name after the restore */

	int err;
	const char *step;
	const char *reason;

	unsigned long private_before;
	bool restored;
	struct page *page;
	struct khoh_refs post;
	bool is_head;
	unsigned int folio_order;
	unsigned long tail_marked;
	unsigned long head_private;
	bool pattern_ok;
	unsigned long bad_pages;
	long first_bad;

	int expected_tail;
	bool expected_compound;
	bool as_expected;

	bool freed;
	const char *free_method;
	const char *note;
};

/* Outgoing state (this kernel's preservations), under khoh_lock. */
static DEFINE_MUTEX(khoh_lock);
static LIST_HEAD(khoh_groups);
static unsigned int khoh_nr_entries;
static struct folio *khoh_fdt;
static size_t khoh_fdt_size;
static bool khoh_committed;
static struct platform_device *khoh_pdev;

/* Incoming state (what the previous kernel handed over), read-only after init. */
static struct {
	bool incoming;
	int err;
	const char *step;
	const char *reason;
	phys_addr_t fdt_phys;
	size_t fdt_size;
	struct folio *fdt_folio;	/* kept: kho/in/sub_fdts stays valid */
	unsigned int nr;
	unsigned int restored;
	unsigned int failed;
	struct khoh_result *results;
} khoh_in;

static struct dentry *khoh_dir;

/* ---- helpers ---------------------------------------------------------- */

static const char *khoh_errname(int err)
{
	switch (-err) {
	case ENOMEM: return "ENOMEM";
	case EINVAL: return "EINVAL";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENOENT: return "ENOENT";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ENODEV: return "ENODEV";
	case EALREADY: return "EALREADY";
	case E2BIG: return "E2BIG";
	case ENOSPC: return "ENOSPC";
	case EFAULT: return "EFAULT";
	case EIO: return "EIO";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	default: return "EUNKNOWN";
	}
}

static u64 khoh_mix(u64 x)
{
	x += KHOH_GOLDEN;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* The first word of page @pgoff of entry (@seed, @group, @index). */
static u64 khoh_page_key(u64 seed, u64 group, u64 index, unsigned long pgoff)
{
	return khoh_mix(seed ^ khoh_mix((group << 48) ^ (index << 32) ^ pgoff));
}

static void khoh_fill_page(void *addr, u64 key)
{
	u64 *p = addr;
	unsigned int i;

	for (i = 0; i < PAGE_SIZE / sizeof(u64); i++)
		p[i] = key + i * KHOH_GOLDEN;
}

static bool khoh_check_page(const void *addr, u64 key)
{
	const u64 *p = addr;
	unsigned int i;

	for (i = 0; i < PAGE_SIZE / sizeof(u64); i++)
		if (p[i] != key + i * KHOH_GOLDEN)
			return false;
	return true;
}

static void khoh_hist_add(struct khoh_refs *r, int val)
{
	unsigned int i;

	for (i = 0; i < r->nr; i++) {
		if (r->val[i] == val) {
			r->cnt[i]++;
			return;
		}
	}
	if (r->nr < KHOH_HIST_SLOTS) {
		r->val[r->nr] = val;
		r->cnt[r->nr++] = 1;
		return;
	}
	r->other++;
}

static void khoh_measure(struct page *head, unsigned int order,
			 struct khoh_refs *r)
{
	unsigned long i, nr = 1UL << order;

	memset(r, 0, sizeof(*r));
	r->head = page_ref_count(head);
	r->compound = PageCompound(head);
	for (i = 1; i < nr; i++) {
		khoh_hist_add(r, page_ref_count(head + i));
		if (!(i % 4096))
			cond_resched();
	}
}

/* True if every tail page of @r has refcount @val. */
static bool khoh_tails_all(const struct khoh_refs *r, int val)
{
	return !r->other && (r->nr == 0 || (r->nr == 1 && r->val[0] == val));
}

/* page->private of the head page of a preserved block, or 0. */
static unsigned long khoh_kho_private(phys_addr_t phys)
{
	struct page *page = pfn_to_online_page(PHYS_PFN(phys));

	return page ? page->private : 0;
}

static bool khoh_has_kho_magic(unsigned long private)
{
	/* union kho_page_info: { unsigned int order; unsigned int magic; } */
	return BITS_PER_LONG == 64 && (private >> 32) == KHOH_PAGE_MAGIC;
}

/* ---- JSON -------------------------------------------------------------- */

static void khoh_json_hist(struct seq_buf *s, const struct khoh_refs *r)
{
	unsigned int i;

	seq_buf_putc(s, '{');
	for (i = 0; i < r->nr; i++)
		seq_buf_printf(s, "%s\"%d\":%lu", i ? "," : "", r->val[i],
			       r->cnt[i]);
	if (r->other)
		seq_buf_printf(s, "%s\"other\":%lu", r->nr ? "," : "",
			       r->other);
	seq_buf_putc(s, '}');
}

static void khoh_json_refs(struct seq_buf *s, const struct khoh_refs *r)
{
	seq_buf_printf(s, "{\"head_ref\":%d,\"tail_ref_histogram\":", r->head);
	khoh_json_hist(s, r);
	seq_buf_printf(s, ",\"compound\":%s}", str_true_false(r->compound));
}

static void khoh_json_error(struct seq_buf *s, int err, const char *step,
			    const char *reason)
{
	seq_buf_printf(s, "\"error\":\"%s\",\"errno\":%d,\"step\":\"%s\"",
		       khoh_errname(err), -err, step);
	if (reason)
		seq_buf_printf(s, ",\"reason\":\"%s\"", reason);
}

static const char *khoh_free_name(enum khoh_free free)
{
	return free == KHOH_FREE_YES ? "1" : free == KHOH_FREE_NO ? "0" :
	       "default";
}

static void khoh_render_status(struct seq_buf *s)
{
	struct khoh_group *g;
	unsigned int i;
	bool first = true;

	seq_buf_printf(s, "{\"module\":\"%s\",\"abi\":\"%s\",\"version\":%d,",
		       KBUILD_MODNAME, KHOH_COMPAT, KHOH_ABI_VERSION);
	seq_buf_printf(s, "\"kho_enabled\":%s,\"committed\":%s,\"nr_entries\":%u,",
		       str_true_false(kho_is_enabled()),
		       str_true_false(khoh_committed), khoh_nr_entries);
	if (khoh_committed)
		seq_buf_printf(s, "\"fdt_phys\":\"0x%llx\",\"fdt_size\":%zu,",
			       (u64)folio_pfn(khoh_fdt) << PAGE_SHIFT,
			       khoh_fdt_size);
	seq_buf_puts(s, "\"entries\":[");
	list_for_each_entry(g, &khoh_groups, node) {
		seq_buf_printf(s, "%s{\"group\":%llu,\"kind\":\"%s\",\"order\":%u,\"count\":%u,\"seed\":%llu,\"free\":\"%s\",\"pages\":%lu,\"node\":%d,\"min_phys\":\"0x%llx\",\"rejected\":%u,\"phys\":[",
			       first ? "" : ",", g->id, khoh_kind_names[g->kind],
			       g->order, g->count, g->seed,
			       khoh_free_name(g->free), 1UL << g->order, g->nid,
			       (u64)g->min_phys, g->rejected);
		first = false;
		for (i = 0; i < g->nr_blocks; i++)
			seq_buf_printf(s, "%s\"0x%llx\"", i ? "," : "",
				       (u64)g->blocks[i].phys);
		seq_buf_puts(s, "],\"nids\":[");
		for (i = 0; i < g->nr_blocks; i++)
			seq_buf_printf(s, "%s%d", i ? "," : "", g->blocks[i].nid);
		seq_buf_puts(s, "],\"pre\":[");
		for (i = 0; i < g->nr_blocks; i++) {
			if (i)
				seq_buf_putc(s, ',');
			khoh_json_refs(s, &g->blocks[i].pre);
		}
		seq_buf_putc(s, ']');
		if (g->err) {
			seq_buf_putc(s, ',');
			khoh_json_error(s, g->err, g->step, g->reason);
		}
		seq_buf_putc(s, '}');
	}
	seq_buf_puts(s, "]}\n");
}

static void khoh_render_result(struct seq_buf *s, const struct khoh_result *r)
{
	seq_buf_printf(s, "{\"kind\":\"%s\",\"order\":%u,\"pages\":%lu,\"phys\":\"0x%llx\",\"seed\":%llu,\"group\":%llu,\"index\":%llu,\"free\":\"%s\",\"private_before\":\"0x%lx\"",
		       khoh_kind_names[r->kind], r->order, 1UL << r->order,
		       (u64)r->phys, r->seed, r->group, r->index,
		       khoh_free_name(r->free), r->private_before);
	if (r->kind == KHOH_DMA_DEV)
		seq_buf_printf(s, ",\"dma_addr\":\"0x%llx\"", r->dma);
	if (r->have_pre) {
		seq_buf_puts(s, ",\"pre\":");
		khoh_json_refs(s, &r->pre);
	}
	seq_buf_printf(s, ",\"nid_before\":%d,\"restored\":%s", r->pre_nid,
		       str_true_false(r->restored));
	if (r->err) {
		seq_buf_putc(s, ',');
		khoh_json_error(s, r->err, r->step, r->reason);
	}
	if (r->restored) {
		seq_buf_printf(s, ",\"nid\":%d,\"zone\":\"%s\",\"pattern_ok\":%s,\"bad_pages\":%lu",
			       r->nid, r->zone, str_true_false(r->pattern_ok),
			       r->bad_pages);
		if (r->first_bad >= 0)
			seq_buf_printf(s, ",\"first_bad_page\":%ld",
				       r->first_bad);
		seq_buf_printf(s, ",\"head_ref\":%d,\"tail_ref_histogram\":",
			       r->post.head);
		khoh_json_hist(s, &r->post);
		seq_buf_printf(s, ",\"compound\":%s,\"head\":%s,\"folio_order\":%u,\"tail_marked\":%lu,\"head_private\":\"0x%lx\"",
			       str_true_false(r->post.compound),
			       str_true_false(r->is_head), r->folio_order,
			       r->tail_marked, r->head_private);
		seq_buf_printf(s, ",\"expected\":{\"head_ref\":1,\"tail_ref\":%d,\"compound\":%s},\"as_expected\":%s",
			       r->expected_tail,
			       str_true_false(r->expected_compound),
			       str_true_false(r->as_expected));
	}
	seq_buf_printf(s, ",\"freed\":%s,\"free_method\":\"%s\"",
		       str_true_false(r->freed),
		       r->free_method ? r->free_method : "none");
	if (r->note)
		seq_buf_printf(s, ",\"note\":\"%s\"", r->note);
	seq_buf_putc(s, '}');
}

static void khoh_render_report(struct seq_buf *s)
{
	unsigned int i;

	seq_buf_printf(s, "{\"module\":\"%s\",\"abi\":\"%s\",\"version\":%d,\"kho_enabled\":%s,\"incoming\":%s,\"restored\":%u,\"failed\":%u,\"free_param\":%d",
		       KBUILD_MODNAME, KHOH_COMPAT, KHOH_ABI_VERSION,
		       str_true_false(kho_is_enabled()),
		       str_true_false(khoh_in.incoming), khoh_in.restored,
		       khoh_in.failed, khoh_free_param);
	if (khoh_in.incoming)
		seq_buf_printf(s, ",\"fdt_phys\":\"0x%llx\",\"fdt_size\":%zu",
			       (u64)khoh_in.fdt_phys, khoh_in.fdt_size);
	if (khoh_in.err) {
		seq_buf_putc(s, ',');
		khoh_json_error(s, khoh_in.err, khoh_in.step, khoh_in.reason);
	}
	seq_buf_puts(s, ",\"entries\":[");
	for (i = 0; i < khoh_in.nr; i++) {
		if (i)
			seq_buf_putc(s, ',');
		khoh_render_result(s, &khoh_in.results[i]);
	}
	seq_buf_puts(s, "]}\n");
}

/* ---- first kernel: allocate, fill, preserve ---------------------------- */

static struct device *khoh_dma_device(void)
{
	struct platform_device_info info = {
		.name = KBUILD_MODNAME,
		.id = PLATFORM_DEVID_NONE,
		.dma_mask = DMA_BIT_MASK(64),
	};
	struct platform_device *pdev;

	if (khoh_pdev)
		return &khoh_pdev->dev;
	pdev = platform_device_register_full(&info);
	if (IS_ERR(pdev))
		return ERR_CAST(pdev);
	if (dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64))) {
		platform_device_unregister(pdev);
		return ERR_PTR(-EIO);
	}
	khoh_pdev = pdev;
	return &pdev->dev;
}

static struct folio *khoh_alloc_gigantic(unsigned int order, gfp_t gfp, int nid)
{
#ifdef CONFIG_CONTIG_ALLOC
	struct page *page;

	if (order > MAX_FOLIO_ORDER)
		return NULL;
	page = alloc_contig_frozen_pages(1UL << order, gfp | __GFP_COMP,
					 nid == NUMA_NO_NODE ? numa_mem_id() : nid,
					 NULL);
	if (!page)
		return NULL;
	/* A frozen compound page: give the head its reference. */
	folio_ref_unfreeze(page_folio(page), 1);
	return page_folio(page);
#else
	return NULL;
#endif
}

/* Undo khoh_alloc_block() and the preservation, in this kernel. */
static void khoh_release_block(struct khoh_group *g, struct khoh_block *b)
{
	unsigned long i, nr = 1UL << g->order;

	if (b->preserved) {
		if (g->kind == KHOH_FOLIO)
			kho_unpreserve_folio(page_folio(b->page));
		else
			kho_unpreserve_pages(b->page, nr);
		b->preserved = false;
	}
	switch (g->kind) {
	case KHOH_FOLIO:
		folio_put(page_folio(b->page));
		break;
	case KHOH_DMA:
		__free_pages(b->page, g->order);
		break;
	case KHOH_SPLIT:
		for (i = 0; i < nr; i++) {
			__free_page(b->page + i);
			if (!(i % 4096))
				cond_resched();
		}
		break;
	case KHOH_DMA_DEV:
		dma_free_coherent(&khoh_pdev->dev, PAGE_SIZE << g->order,
				  b->cpu, b->dma);
		break;
	default:
		break;
	}
	b->page = NULL;
}

static int khoh_alloc_one(struct khoh_group *g, struct khoh_block *b)
{
	const gfp_t gfp = GFP_KERNEL | __GFP_NOWARN | __GFP_RETRY_MAYFAIL |
			  (g->nid == NUMA_NO_NODE ? 0 : __GFP_THISNODE);
	const int nid = g->nid == NUMA_NO_NODE ? numa_mem_id() : g->nid;
	struct page *page = NULL;
	struct folio *folio;
	struct device *dev;
	struct sg_table sgt;
	int err;

	switch (g->kind) {
	case KHOH_FOLIO:
		if (g->order <= MAX_PAGE_ORDER)
			folio = __folio_alloc_node(gfp, g->order, nid);
		else
			folio = khoh_alloc_gigantic(g->order, gfp, g->nid);
		if (folio)
			page = &folio->page;
		break;
	case KHOH_DMA:
		if (g->order > MAX_PAGE_ORDER) {
			g->reason = "no non-compound buddy block above MAX_PAGE_ORDER";
			return -EINVAL;
		}
		/* What dma-direct's __dma_direct_alloc_pages() does: no __GFP_COMP. */
		page = alloc_pages_node(nid, gfp, g->order);
		break;
	case KHOH_SPLIT:
		if (g->order <= MAX_PAGE_ORDER) {
			page = alloc_pages_node(nid, gfp, g->order);
			if (page)
				split_page(page, g->order);
		} else {
#ifdef CONFIG_CONTIG_ALLOC
			/* Every page comes back with refcount 1. */
			page = alloc_contig_pages(1UL << g->order, gfp, nid,
						  NULL);
#endif
		}
		break;
	case KHOH_DMA_DEV:
		dev = khoh_dma_device();
		if (IS_ERR(dev)) {
			g->reason = "could not register the platform device";
			return PTR_ERR(dev);
		}
		b->cpu = dma_alloc_coherent(dev, PAGE_SIZE << g->order, &b->dma,
					    GFP_KERNEL | __GFP_NOWARN);
		if (!b->cpu)
			break;
		err = dma_get_sgtable(dev, &sgt, b->cpu, b->dma,
				      PAGE_SIZE << g->order);
		if (err) {
			dma_free_coherent(dev, PAGE_SIZE << g->order, b->cpu,
					  b->dma);
			g->reason = "dma_get_sgtable failed";
			return err;
		}
		page = sg_page(sgt.sgl);
		sg_free_table(&sgt);
		break;
	default:
		return -EINVAL;
	}
	if (!page)
		return -ENOMEM;
	b->page = page;
	b->phys = page_to_phys(page);
	b->nid = page_to_nid(page);
	return 0;
}

/*
 * One block, at or above g->min_phys when that is set: blocks below it are
 * set aside (so the allocator hands out others) and freed once one is found.
 */
static int khoh_alloc_block(struct khoh_group *g, struct khoh_block *b)
{
	struct khoh_block *rejects;
	unsigned int n = 0;
	int err;

	if (!g->min_phys)
		return khoh_alloc_one(g, b);
	rejects = kvmalloc_array(KHOH_MAX_REJECTS, sizeof(*rejects), GFP_KERNEL);
	if (!rejects)
		return -ENOMEM;
	for (;;) {
		err = khoh_alloc_one(g, b);
		if (err || b->phys >= g->min_phys)
			break;
		if (n == KHOH_MAX_REJECTS) {
			khoh_release_block(g, b);
			g->reason = "no block at or above min_phys within the tries";
			err = -ENOSPC;
			break;
		}
		rejects[n++] = *b;
		cond_resched();
	}
	g->rejected += n;
	while (n)
		khoh_release_block(g, &rejects[--n]);
	kvfree(rejects);
	return err;
}

static void khoh_release_group(struct khoh_group *g)
{
	while (g->nr_blocks)
		khoh_release_block(g, &g->blocks[--g->nr_blocks]);
}

/* Allocates, fills and preserves all blocks of @g, or none of them. */
static void khoh_preserve_group(struct khoh_group *g)
{
	unsigned long nr = 1UL << g->order;
	unsigned int i;
	int err = 0;

	for (i = 0; i < g->count; i++) {
		struct khoh_block *b = &g->blocks[i];
		unsigned long j;

		err = khoh_alloc_block(g, b);
		if (err) {
			g->step = "alloc";
			break;
		}
		g->nr_blocks++;
		khoh_measure(b->page, g->order, &b->pre);
		for (j = 0; j < nr; j++) {
			void *addr = g->kind == KHOH_DMA_DEV ?
				     b->cpu + j * PAGE_SIZE :
				     page_address(b->page + j);

			khoh_fill_page(addr, khoh_page_key(g->seed, g->id, i, j));
			cond_resched();
		}
		if (g->kind == KHOH_FOLIO)
			err = kho_preserve_folio(page_folio(b->page));
		else
			err = kho_preserve_pages(b->page, nr);
		if (err) {
			g->step = "preserve";
			break;
		}
		b->preserved = true;
	}
	if (err) {
		g->err = err;
		khoh_release_group(g);
		pr_warn("preserve %s order %u: %s at step %s\n",
			khoh_kind_names[g->kind], g->order, khoh_errname(err),
			g->step);
	}
}

static int khoh_parse_kind(const char *val, enum khoh_kind *kind)
{
	int i = match_string(khoh_kind_names, KHOH_NR_KINDS, val);

	if (i < 0)
		return -EINVAL;
	*kind = i;
	return 0;
}

static int khoh_cmd_preserve(char *args)
{
	enum khoh_kind kind = KHOH_NR_KINDS;
	enum khoh_free free = KHOH_FREE_DEFAULT;
	unsigned int order = UINT_MAX, count = 1;
	int nid = NUMA_NO_NODE;
	struct khoh_group *g;
	u64 seed = 0, min_phys = 0;
	char *tok;
	int err = 0;

	while ((tok = strsep(&args, " \t")) != NULL) {
		char *val;
		bool b;

		if (!*tok)
			continue;
		val = strchr(tok, '=');
		if (!val)
			return -EINVAL;
		*val++ = '\0';
		if (!strcmp(tok, "kind")) {
			err = khoh_parse_kind(val, &kind);
		} else if (!strcmp(tok, "order")) {
			err = kstrtouint(val, 0, &order);
		} else if (!strcmp(tok, "count")) {
			err = kstrtouint(val, 0, &count);
		} else if (!strcmp(tok, "seed")) {
			err = kstrtou64(val, 0, &seed);
		} else if (!strcmp(tok, "node")) {
			err = kstrtoint(val, 0, &nid);
			if (!err && (nid < 0 || nid >= MAX_NUMNODES ||
				     !node_online(nid)))
				err = -EINVAL;
		} else if (!strcmp(tok, "min_phys")) {
			err = kstrtou64(val, 0, &min_phys);
		} else if (!strcmp(tok, "free")) {
			err = kstrtobool(val, &b);
			if (!err)
				free = b ? KHOH_FREE_YES : KHOH_FREE_NO;
		} else {
			err = -EINVAL;
		}
		if (err) {
			pr_warn("preserve: bad argument %s=%s\n", tok, val);
			return -EINVAL;
		}
	}
	if (kind == KHOH_NR_KINDS || order == UINT_MAX) {
		pr_warn("preserve: kind= and order= are required\n");
		return -EINVAL;
	}
	if (order > MAX_FOLIO_ORDER || !count || count > KHOH_MAX_COUNT) {
		pr_warn("preserve: order must be <= %u and count 1..%u\n",
			(unsigned int)MAX_FOLIO_ORDER, KHOH_MAX_COUNT);
		return -EINVAL;
	}
	if (kind == KHOH_DMA_DEV && (nid != NUMA_NO_NODE || min_phys)) {
		pr_warn("preserve: dma-dev blocks come from the DMA API: no node= or min_phys=\n");
		return -EINVAL;
	}
	if (khoh_nr_entries + count > KHOH_MAX_ENTRIES) {
		pr_warn("preserve: more than %u entries\n", KHOH_MAX_ENTRIES);
		return -ENOSPC;
	}

	g = kzalloc(struct_size(g, blocks, count), GFP_KERNEL);
	if (!g)
		return -ENOMEM;
	g->count = count;
	g->kind = kind;
	g->order = order;
	g->seed = seed;
	g->free = free;
	g->nid = nid;
	g->min_phys = min_phys;
	g->id = list_count_nodes(&khoh_groups);
	khoh_preserve_group(g);
	list_add_tail(&g->node, &khoh_groups);
	khoh_nr_entries += g->nr_blocks;
	return 0;
}

static int khoh_fdt_u64(void *fdt, const char *name, u64 val)
{
	return fdt_property(fdt, name, &val, sizeof(val));
}

static int khoh_fdt_entry(void *fdt, unsigned int n,
			  const struct khoh_group *g, unsigned int i)
{
	const struct khoh_block *b = &g->blocks[i];
	u64 pairs[2 * KHOH_HIST_SLOTS];
	char name[24];
	unsigned int k;
	int err;

	for (k = 0; k < b->pre.nr; k++) {
		pairs[2 * k] = (u64)(s64)b->pre.val[k];
		pairs[2 * k + 1] = b->pre.cnt[k];
	}
	snprintf(name, sizeof(name), "entry-%u", n);
	err = fdt_begin_node(fdt, name);
	err |= fdt_property_string(fdt, "kind", khoh_kind_names[g->kind]);
	err |= khoh_fdt_u64(fdt, "order", g->order);
	err |= khoh_fdt_u64(fdt, "phys", b->phys);
	err |= khoh_fdt_u64(fdt, "seed", g->seed);
	err |= khoh_fdt_u64(fdt, "group", g->id);
	err |= khoh_fdt_u64(fdt, "index", i);
	err |= khoh_fdt_u64(fdt, "free", g->free);
	err |= khoh_fdt_u64(fdt, "pre-head-ref", (u64)(s64)b->pre.head);
	err |= khoh_fdt_u64(fdt, "pre-compound", b->pre.compound);
	err |= fdt_property(fdt, "pre-tail-refs", pairs,
			    2 * b->pre.nr * sizeof(u64));
	err |= khoh_fdt_u64(fdt, "pre-tail-other", b->pre.other);
	err |= khoh_fdt_u64(fdt, "pre-nid", (u64)(s64)b->nid);
	if (g->kind == KHOH_DMA_DEV)
		err |= khoh_fdt_u64(fdt, "dma-addr", b->dma);
	err |= fdt_end_node(fdt);
	return err;
}

static int khoh_build_fdt(void *fdt, size_t size)
{
	const struct khoh_group *g;
	unsigned int i, n = 0;
	int err;

	err = fdt_create(fdt, size);
	err |= fdt_finish_reservemap(fdt);
	err |= fdt_begin_node(fdt, "");
	err |= fdt_property_string(fdt, "compatible", KHOH_COMPAT);
	err |= khoh_fdt_u64(fdt, "nr-entries", khoh_nr_entries);
	list_for_each_entry(g, &khoh_groups, node) {
		for (i = 0; i < g->nr_blocks && !err; i++)
			err |= khoh_fdt_entry(fdt, n++, g, i);
	}
	err |= fdt_end_node(fdt);
	err |= fdt_finish(fdt);
	return err ? -ENOSPC : 0;
}

/* Withdraws the published subtree and its FDT; the preserved blocks stay preserved. */
static void khoh_uncommit(void)
{
	if (!khoh_committed)
		return;
	kho_remove_subtree(folio_address(khoh_fdt));
	kho_unpreserve_folio(khoh_fdt);
	folio_put(khoh_fdt);
	khoh_fdt = NULL;
	khoh_fdt_size = 0;
	khoh_committed = false;
}

/*
 * Publishes every group preserved so far as the subtree. Committing again (after more
 * preserve commands) replaces the subtree: several users of one guest (the harness's shared
 * guests) each preserve and commit in turn, and the last commit carries all of them.
 */
static int khoh_cmd_commit(void)
{
	size_t size = PAGE_SIZE + (size_t)khoh_nr_entries * 512;
	struct folio *folio;
	void *fdt;
	int err;

	khoh_uncommit();
	folio = folio_alloc(GFP_KERNEL | __GFP_ZERO, get_order(size));
	if (!folio)
		return -ENOMEM;
	fdt = folio_address(folio);
	err = khoh_build_fdt(fdt, folio_size(folio));
	if (err) {
		pr_err("commit: building the FDT failed\n");
		goto err_put;
	}
	err = kho_preserve_folio(folio);
	if (err)
		goto err_put;
	err = kho_add_subtree(KHOH_SUBTREE, fdt, fdt_totalsize(fdt));
	if (err)
		goto err_unpreserve;
	khoh_fdt = folio;
	khoh_fdt_size = fdt_totalsize(fdt);
	khoh_committed = true;
	pr_info("committed %u entries in subtree %s (fdt at 0x%llx, %zu bytes)\n",
		khoh_nr_entries, KHOH_SUBTREE, (u64)folio_pfn(folio) << PAGE_SHIFT,
		khoh_fdt_size);
	return 0;

err_unpreserve:
	kho_unpreserve_folio(folio);
err_put:
	folio_put(folio);
	pr_err("commit failed: %s\n", khoh_errname(err));
	return err;
}

/* Drops everything this kernel preserved: the subtree, the FDT, the blocks. */
static void khoh_cmd_reset(void)
{
	struct khoh_group *g, *tmp;

	khoh_uncommit();
	list_for_each_entry_safe(g, tmp, &khoh_groups, node) {
		list_del(&g->node);
		khoh_release_group(g);
		kfree(g);
	}
	khoh_nr_entries = 0;
}

/*
 * "fault-at-kexec panic|hang": a fault of the old kernel's own at the kexec, for the harness's
 * fault tests. A reboot notifier runs in kernel_kexec() (kernel_restart_prepare()), after
 * userspace asked for the reboot and before the new kernel starts: "panic" panics there, "hang"
 * sleeps forever without a word (the reboot path never ends, the console goes silent).
 */
static enum { KHOH_FAULT_NONE, KHOH_FAULT_PANIC, KHOH_FAULT_HANG } khoh_fault;

static int khoh_reboot_notify(struct notifier_block *nb, unsigned long action,
			      void *data)
{
	if (khoh_fault == KHOH_FAULT_PANIC)
		panic("kho_harness: fault-at-kexec panic, as asked");
	if (khoh_fault == KHOH_FAULT_HANG) {
		pr_info("fault-at-kexec hang, as asked: the reboot stops here\n");
		for (;;)
			msleep(1000);
	}
	return NOTIFY_DONE;
}

static struct notifier_block khoh_reboot_nb = {
	.notifier_call = khoh_reboot_notify,
};
static bool khoh_reboot_registered;

static int khoh_cmd_fault(char *what)
{
	what = strim(what);
	if (!strcmp(what, "panic"))
		khoh_fault = KHOH_FAULT_PANIC;
	else if (!strcmp(what, "hang"))
		khoh_fault = KHOH_FAULT_HANG;
	else
		return -EINVAL;
	if (!khoh_reboot_registered) {
		int err = register_reboot_notifier(&khoh_reboot_nb);

		if (err)
			return err;
		khoh_reboot_registered = true;
	}
	return 0;
}

static int khoh_exec(char *line)
{
	char *verb = strsep(&line, " \t");

	if (!strcmp(verb, "preserve"))
		return khoh_cmd_preserve(line ? line : "");
	if (!strcmp(verb, "fault-at-kexec"))
		return khoh_cmd_fault(line ? line : "");
	if (line && *skip_spaces(line))
		return -EINVAL;
	if (!strcmp(verb, "commit"))
		return khoh_cmd_commit();
	if (!strcmp(verb, "reset")) {
		khoh_cmd_reset();
		return 0;
	}
	pr_warn("unknown command \"%s\"\n", verb);
	return -EINVAL;
}

static ssize_t khoh_ctl_write(struct file *file, const char __user *ubuf,
			      size_t len, loff_t *ppos)
{
	char *buf, *cur, *line;
	int err = 0;

	if (len > KHOH_CTL_MAX)
		return -E2BIG;
	if (!kho_is_enabled())
		return -EOPNOTSUPP;
	buf = memdup_user_nul(ubuf, len);
	if (IS_ERR(buf))
		return PTR_ERR(buf);
	if (mutex_lock_killable(&khoh_lock)) {
		kfree(buf);
		return -EINTR;
	}
	cur = buf;
	while (!err && (line = strsep(&cur, "\n;")) != NULL) {
		line = strim(line);
		if (*line)
			err = khoh_exec(line);
	}
	mutex_unlock(&khoh_lock);
	kfree(buf);
	return err ? err : len;
}

/* ---- next kernel: restore, measure, free ------------------------------ */

static int khoh_get_u64(const void *fdt, int node, const char *name, u64 *val)
{
	const void *p;
	int len;

	p = fdt_getprop(fdt, node, name, &len);
	if (!p || len != sizeof(u64))
		return -EINVAL;
	*val = get_unaligned((const u64 *)p);
	return 0;
}

static int khoh_parse_entry(const void *fdt, int node, struct khoh_result *r)
{
	u64 order, phys, free, head, compound, other = 0;
	const void *pairs;
	const char *kind;
	int len, err;
	unsigned int k;

	r->first_bad = -1;
	r->pre_nid = -1;
	r->nid = -1;
	r->zone = "none";
	kind = fdt_getprop(fdt, node, "kind", &len);
	if (!kind || len < 1 || kind[len - 1] || khoh_parse_kind(kind, &r->kind))
		return -EINVAL;
	err = khoh_get_u64(fdt, node, "order", &order);
	err = err ?: khoh_get_u64(fdt, node, "phys", &phys);
	err = err ?: khoh_get_u64(fdt, node, "seed", &r->seed);
	err = err ?: khoh_get_u64(fdt, node, "group", &r->group);
	err = err ?: khoh_get_u64(fdt, node, "index", &r->index);
	err = err ?: khoh_get_u64(fdt, node, "free", &free);
	if (err)
		return err;
	if (order > MAX_FOLIO_ORDER || !PAGE_ALIGNED(phys) ||
	    free > KHOH_FREE_DEFAULT)
		return -EINVAL;
	r->order = order;
	r->phys = phys;
	r->free = free;
	khoh_get_u64(fdt, node, "dma-addr", &r->dma);
	if (!khoh_get_u64(fdt, node, "pre-nid", &head))
		r->pre_nid = (int)(s64)head;

	if (khoh_get_u64(fdt, node, "pre-head-ref", &head) ||
	    khoh_get_u64(fdt, node, "pre-compound", &compound))
		return 0;
	pairs = fdt_getprop(fdt, node, "pre-tail-refs", &len);
	if (!pairs || len % (2 * sizeof(u64)) ||
	    len > 2 * KHOH_HIST_SLOTS * sizeof(u64))
		return 0;
	khoh_get_u64(fdt, node, "pre-tail-other", &other);
	r->pre.head = (int)(s64)head;
	r->pre.compound = compound;
	r->pre.nr = len / (2 * sizeof(u64));
	for (k = 0; k < r->pre.nr; k++) {
		r->pre.val[k] = (int)(s64)get_unaligned((const u64 *)pairs + 2 * k);
		r->pre.cnt[k] = get_unaligned((const u64 *)pairs + 2 * k + 1);
	}
	r->pre.other = other;
	r->have_pre = true;
	return 0;
}

static bool khoh_want_free(const struct khoh_result *r)
{
	if (r->free != KHOH_FREE_DEFAULT)
		return r->free == KHOH_FREE_YES;
	if (khoh_free_param >= 0)
		return khoh_free_param;
	return r->kind == KHOH_FOLIO || r->kind == KHOH_SPLIT;
}

static void khoh_restore_entry(struct khoh_result *r)
{
	unsigned long i, nr = 1UL << r->order;
	struct page *head;
	struct folio *folio;

	r->private_before = khoh_kho_private(r->phys);
	if (!khoh_has_kho_magic(r->private_before)) {
		r->err = -ENOENT;
		r->step = "restore";
		r->reason = "head page carries no KHO magic (not preserved, or already restored)";
		return;
	}
	if (r->kind == KHOH_FOLIO) {
		folio = kho_restore_folio(r->phys);
		head = folio ? &folio->page : NULL;
	} else {
		head = kho_restore_pages(r->phys, nr);
	}
	if (!head) {
		r->err = -EINVAL;
		r->step = "restore";
		r->reason = r->kind == KHOH_FOLIO ? "kho_restore_folio returned NULL" :
			    "kho_restore_pages returned NULL";
		return;
	}
	r->restored = true;
	r->page = head;

	khoh_measure(head, r->order, &r->post);
	r->nid = page_to_nid(head);
	r->zone = page_zone(head)->name;
	r->is_head = PageHead(head);
	r->folio_order = folio_order(page_folio(head));
	r->head_private = head->private;
	r->pattern_ok = true;
	for (i = 0; i < nr; i++) {
		if (PageTail(head + i))
			r->tail_marked++;
		if (!khoh_check_page(page_address(head + i),
				     khoh_page_key(r->seed, r->group, r->index, i))) {
			if (r->first_bad < 0)
				r->first_bad = i;
			r->bad_pages++;
			r->pattern_ok = false;
		}
		cond_resched();
	}

	/* What the unsplit series promises; for dma-dev, the allocator's own shape. */
	switch (r->kind) {
	case KHOH_FOLIO:
		r->expected_tail = 0;
		r->expected_compound = r->order > 0;
		break;
	case KHOH_DMA:
		r->expected_tail = 0;
		r->expected_compound = false;
		break;
	case KHOH_SPLIT:
		r->expected_tail = 1;
		r->expected_compound = false;
		break;
	default:
		r->expected_tail = r->have_pre && r->pre.nr ? r->pre.val[0] : 0;
		r->expected_compound = r->have_pre && r->pre.compound;
		break;
	}
	r->as_expected = r->post.head == 1 &&
			 khoh_tails_all(&r->post, r->expected_tail) &&
			 r->post.compound == r->expected_compound &&
			 (r->kind != KHOH_FOLIO || r->folio_order == r->order);
}

/* Frees @r the way its original owner would have, if the policy says so. */
static void khoh_free_entry(struct khoh_result *r)
{
	unsigned long i, nr = 1UL << r->order;
	bool tails_zero;

	if (!r->restored)
		return;
	if (!khoh_want_free(r)) {
		r->note = r->kind == KHOH_DMA || r->kind == KHOH_DMA_DEV ?
			  "leaked deliberately: dma blocks are freed only with free=1" :
			  "leaked deliberately: free=0";
		return;
	}
	tails_zero = khoh_tails_all(&r->post, 0);
	switch (r->kind) {
	case KHOH_FOLIO:
		r->free_method = "folio_put";
		folio_put(page_folio(r->page));
		break;
	case KHOH_DMA_DEV:
		/* A CMA allocation (all refcounts 1) goes back page by page. */
		if (r->have_pre && !khoh_tails_all(&r->pre, 0))
			goto per_page;
		fallthrough;
	case KHOH_DMA:
		r->free_method = "__free_pages";
		if (!tails_zero)
			r->note = "tails have a nonzero refcount: expect Bad page state";
		__free_pages(r->page, r->order);
		break;
	case KHOH_SPLIT:
per_page:
		r->free_method = "__free_page per page";
		for (i = 0; i < nr; i++) {
			__free_page(r->page + i);
			if (!(i % 4096))
				cond_resched();
		}
		break;
	default:
		return;
	}
	r->freed = true;
}

static void khoh_print_result(unsigned int n, const struct khoh_result *r)
{
	char *buf = kmalloc(1024, GFP_KERNEL);
	struct seq_buf s;

	if (!buf)
		return;
	seq_buf_init(&s, buf, 1024);
	khoh_render_result(&s, r);
	pr_info("entry %u: %s\n", n, seq_buf_str(&s));
	kfree(buf);
}

static void khoh_restore_all(void)
{
	struct folio *fdt_folio;
	unsigned long private;
	phys_addr_t phys;
	const void *fdt;
	size_t size;
	unsigned int n;
	int err, node;

	err = kho_retrieve_subtree(KHOH_SUBTREE, &phys, &size);
	if (err == -ENOENT || err == -EOPNOTSUPP)
		return;	/* first kernel, or KHO disabled */
	khoh_in.incoming = true;
	khoh_in.step = "retrieve";
	if (err)
		goto fail;
	khoh_in.fdt_phys = phys;
	khoh_in.fdt_size = size;

	khoh_in.step = "fdt";
	private = khoh_kho_private(phys);
	if (!khoh_has_kho_magic(private)) {
		err = -EALREADY;
		khoh_in.reason = "FDT already restored in this boot (module reloaded?)";
		goto fail;
	}
	fdt_folio = kho_restore_folio(phys);
	if (!fdt_folio) {
		err = -EINVAL;
		khoh_in.reason = "kho_restore_folio failed on the FDT";
		goto fail;
	}
	fdt = folio_address(fdt_folio);
	if (fdt_check_header(fdt) || fdt_totalsize(fdt) > folio_size(fdt_folio) ||
	    fdt_node_check_compatible(fdt, 0, KHOH_COMPAT)) {
		err = -EINVAL;
		khoh_in.reason = "not a " KHOH_COMPAT " FDT";
		goto put_fdt;
	}
	n = 0;
	fdt_for_each_subnode(node, fdt, 0)
		n++;
	khoh_in.results = kvcalloc(n, sizeof(*khoh_in.results), GFP_KERNEL);
	if (n && !khoh_in.results) {
		err = -ENOMEM;
		khoh_in.reason = "no memory for the report";
		goto put_fdt;
	}
	khoh_in.step = NULL;
	fdt_for_each_subnode(node, fdt, 0) {
		struct khoh_result *r = &khoh_in.results[khoh_in.nr++];

		err = khoh_parse_entry(fdt, node, r);
		if (err) {
			r->err = err;
			r->step = "fdt";
			r->reason = "malformed entry";
			r->first_bad = -1;
			khoh_in.failed++;
			continue;
		}
		khoh_restore_entry(r);
		if (r->restored)
			khoh_in.restored++;
		else
			khoh_in.failed++;
		/* Report before freeing: the free may trip Bad page state. */
		khoh_print_result(khoh_in.nr - 1, r);
	}
	/* Held until unload, so debugfs kho/in/sub_fdts/kho_harness stays valid. */
	khoh_in.fdt_folio = fdt_folio;
	pr_info("restored %u of %u entries\n", khoh_in.restored, khoh_in.nr);

	for (n = 0; n < khoh_in.nr; n++) {
		struct khoh_result *r = &khoh_in.results[n];

		khoh_free_entry(r);
		if (r->freed)
			pr_info("entry %u: freed with %s\n", n, r->free_method);
	}
	return;

put_fdt:
	folio_put(fdt_folio);
fail:
	khoh_in.err = err;
	pr_err("restore failed at step %s: %s\n", khoh_in.step, khoh_errname(err));
}

/* ---- debugfs ----------------------------------------------------------- */

struct khoh_text {
	size_t len;
	char buf[];
};

static int khoh_json_open(struct file *file, void (*render)(struct seq_buf *))
{
	size_t size = SZ_16K;
	struct khoh_text *t;
	struct seq_buf s;

	for (;;) {
		t = kvmalloc(struct_size(t, buf, size), GFP_KERNEL);
		if (!t)
			return -ENOMEM;
		seq_buf_init(&s, t->buf, size);
		if (mutex_lock_killable(&khoh_lock)) {
			kvfree(t);
			return -EINTR;
		}
		render(&s);
		mutex_unlock(&khoh_lock);
		if (!seq_buf_has_overflowed(&s))
			break;
		kvfree(t);
		if (size >= SZ_64M)
			return -E2BIG;
		size *= 2;
	}
	t->len = seq_buf_used(&s);
	file->private_data = t;
	return nonseekable_open(file->f_inode, file);
}

static int khoh_status_open(struct inode *inode, struct file *file)
{
	return khoh_json_open(file, khoh_render_status);
}

static int khoh_report_open(struct inode *inode, struct file *file)
{
	return khoh_json_open(file, khoh_render_report);
}

static ssize_t khoh_json_read(struct file *file, char __user *ubuf,
			      size_t len, loff_t *ppos)
{
	const struct khoh_text *t = file->private_data;

	return simple_read_from_buffer(ubuf, len, ppos, t->buf, t->len);
}

static int khoh_json_release(struct inode *inode, struct file *file)
{
	kvfree(file->private_data);
	return 0;
}

static const struct file_operations khoh_status_fops = {
	.owner = THIS_MODULE,
	.open = khoh_status_open,
	.read = khoh_json_read,
	.release = khoh_json_release,
};

static const struct file_operations khoh_report_fops = {
	.owner = THIS_MODULE,
	.open = khoh_report_open,
	.read = khoh_json_read,
	.release = khoh_json_release,
};

static const struct file_operations khoh_ctl_fops = {
	.owner = THIS_MODULE,
	.open = nonseekable_open,
	.write = khoh_ctl_write,
};

static int __init khoh_init(void)
{
	if (kho_is_enabled())
		khoh_restore_all();
	else
		pr_info("KHO is disabled (boot with kho=on): nothing to restore, preserve is refused\n");

	khoh_dir = debugfs_create_dir(KBUILD_MODNAME, NULL);
	debugfs_create_file("ctl", 0200, khoh_dir, NULL, &khoh_ctl_fops);
	debugfs_create_file("status", 0400, khoh_dir, NULL, &khoh_status_fops);
	debugfs_create_file("report", 0400, khoh_dir, NULL, &khoh_report_fops);
	return 0;
}

static void __exit khoh_exit(void)
{
	if (khoh_reboot_registered)
		unregister_reboot_notifier(&khoh_reboot_nb);
	debugfs_remove(khoh_dir);
	mutex_lock(&khoh_lock);
	khoh_cmd_reset();
	mutex_unlock(&khoh_lock);
	if (khoh_pdev)
		platform_device_unregister(khoh_pdev);
	/* Restored blocks that were not freed stay leaked on purpose. */
	kvfree(khoh_in.results);
	if (khoh_in.fdt_folio)
		folio_put(khoh_in.fdt_folio);
}

module_init(khoh_init);
module_exit(khoh_exit);

MODULE_DESCRIPTION("KHO test module for kho-harness: preserve, restore and measure pages across kexec");
MODULE_LICENSE("GPL");
