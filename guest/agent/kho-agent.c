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
 * Build: gcc -static -O2 -Wall -Wextra -Werror -I<kernel uapi headers> -o kho-agent kho-agent.c init.c
 * (init.c: run as /init, the same binary sets the guest up).
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <linux/reboot.h>

#include "agent.h"

/* ---- uapi: prefer the kernel's headers, fall back to the (stable) ABI copied here ---- */

#if __has_include(<linux/liveupdate.h>)
#include <linux/liveupdate.h>
#define AGENT_UAPI_HEADER 1
#else
#define AGENT_UAPI_HEADER 0
#define LIVEUPDATE_IOCTL_TYPE 0xBA
#define LIVEUPDATE_SESSION_NAME_LENGTH 64
struct liveupdate_ioctl_create_session {
	uint32_t size;
	int32_t fd;
	uint8_t name[LIVEUPDATE_SESSION_NAME_LENGTH];
};
struct liveupdate_ioctl_retrieve_session {
	uint32_t size;
	int32_t fd;
	uint8_t name[LIVEUPDATE_SESSION_NAME_LENGTH];
};
struct liveupdate_session_preserve_fd {
	uint32_t size;
	int32_t fd;
	uint64_t token __attribute__((aligned(8)));
};
struct liveupdate_session_retrieve_fd {
	uint32_t size;
	int32_t fd;
	uint64_t token __attribute__((aligned(8)));
};
struct liveupdate_session_finish {
	uint32_t size;
	uint32_t reserved;
};
struct liveupdate_session_get_name {
	uint32_t size;
	uint32_t reserved;
	uint8_t name[LIVEUPDATE_SESSION_NAME_LENGTH];
};
#define LIVEUPDATE_IOCTL_CREATE_SESSION _IO(LIVEUPDATE_IOCTL_TYPE, 0x00)
#define LIVEUPDATE_IOCTL_RETRIEVE_SESSION _IO(LIVEUPDATE_IOCTL_TYPE, 0x01)
#define LIVEUPDATE_SESSION_PRESERVE_FD _IO(LIVEUPDATE_IOCTL_TYPE, 0x40)
#define LIVEUPDATE_SESSION_RETRIEVE_FD _IO(LIVEUPDATE_IOCTL_TYPE, 0x41)
#define LIVEUPDATE_SESSION_FINISH _IO(LIVEUPDATE_IOCTL_TYPE, 0x42)
#define LIVEUPDATE_SESSION_GET_NAME _IO(LIVEUPDATE_IOCTL_TYPE, 0x43)
#endif

_Static_assert(sizeof(struct liveupdate_ioctl_create_session) == 72, "create_session ABI");
_Static_assert(sizeof(struct liveupdate_session_preserve_fd) == 16, "preserve_fd ABI");
_Static_assert(sizeof(struct liveupdate_session_finish) == 8, "finish ABI");

#ifndef KEXEC_FILE_NO_INITRAMFS
#define KEXEC_FILE_NO_INITRAMFS 0x00000004
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

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

static uint64_t g_page_size;

/* ---------------------------------------------------------------- JSON emitter ---- */

struct jw {
	char *buf;
	size_t len, cap;
	int depth;
	bool need_comma[32];
	bool after_key;
};

static void jw_put(struct jw *w, const char *s, size_t n)
{
	if (w->len + n + 1 > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		while (cap < w->len + n + 1)
			cap *= 2;
		char *p = realloc(w->buf, cap);
		if (!p) {
			fputs("{\"ok\":false,\"error\":\"out of memory\",\"errno\":12,\"errname\":\"ENOMEM\",\"step\":\"json\"}\n",
			      stdout);
			exit(1);
		}
		w->buf = p;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void jw_puts(struct jw *w, const char *s)
{
	jw_put(w, s, strlen(s));
}

/* Every value starts here: a comma unless it is the first in its container or follows a key. */
static void jw_value(struct jw *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (w->need_comma[w->depth])
		jw_put(w, ",", 1);
	w->need_comma[w->depth] = true;
}

static void jw_open(struct jw *w, char c)
{
	jw_value(w);
	jw_put(w, &c, 1);
	w->need_comma[++w->depth] = false;
}

static void jw_close(struct jw *w, char c)
{
	w->depth--;
	jw_put(w, &c, 1);
}

static void jw_quoted(struct jw *w, const char *s)
{
	jw_put(w, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			jw_put(w, esc, 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			jw_puts(w, esc);
		} else {
			jw_put(w, (const char *)&c, 1);
		}
	}
	jw_put(w, "\"", 1);
}

static void jw_key(struct jw *w, const char *k)
{
	jw_value(w);
	jw_quoted(w, k);
	jw_put(w, ":", 1);
	w->after_key = true;
}

static void jw_str(struct jw *w, const char *s)
{
	jw_value(w);
	if (s)
		jw_quoted(w, s);
	else
		jw_puts(w, "null");
}

static void jw_u64(struct jw *w, uint64_t v)
{
	char tmp[24];
	jw_value(w);
	snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	jw_puts(w, tmp);
}

static void jw_i64(struct jw *w, int64_t v)
{
	char tmp[24];
	jw_value(w);
	snprintf(tmp, sizeof(tmp), "%" PRId64, v);
	jw_puts(w, tmp);
}

static void jw_bool(struct jw *w, bool v)
{
	jw_value(w);
	jw_puts(w, v ? "true" : "false");
}

static void jw_null(struct jw *w)
{
	jw_value(w);
	jw_puts(w, "null");
}

/* u64 values that may exceed 2^53 (tokens, seeds) go out as decimal strings. */
static void jw_u64str(struct jw *w, uint64_t v)
{
	char tmp[24];
	snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	jw_str(w, tmp);
}

static void jw_kstr(struct jw *w, const char *k, const char *v)
{
	jw_key(w, k);
	jw_str(w, v);
}

static void jw_ku64(struct jw *w, const char *k, uint64_t v)
{
	jw_key(w, k);
	jw_u64(w, v);
}

static void jw_ki64(struct jw *w, const char *k, int64_t v)
{
	jw_key(w, k);
	jw_i64(w, v);
}

static void jw_kbool(struct jw *w, const char *k, bool v)
{
	jw_key(w, k);
	jw_bool(w, v);
}

static void jw_emit(struct jw *w)
{
	fwrite(w->buf, 1, w->len, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	w->len = 0;
	w->depth = 0;
	w->need_comma[0] = false;
	w->after_key = false;
}

/* ------------------------------------------------------------- errors and context ---- */

static const char *g_command = "none";
static const char *g_ctx_session; /* the session being worked on, for error reports */
static bool g_ctx_has_token;
static uint64_t g_ctx_token;
static struct jw g_ioctl_log; /* the body of the "ioctls" array: one object per LUO ioctl */

/* Where the agent's own time went, summed over memfds (ms): "timings_ms" in every result. */
static struct {
	double fill, preserve_fd, retrieve_fd, contents, pages, kexec_load;
} g_ms;

static double now_ms(void)
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

static const char *errname(int err)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	const char *name = strerrorname_np(err);
	if (name)
		return name;
#endif
	static char buf[16];
	snprintf(buf, sizeof(buf), "E%d", err);
	return buf;
}

static void jw_errno(struct jw *w, int err)
{
	jw_ki64(w, "errno", err);
	jw_key(w, "errname");
	if (err)
		jw_str(w, errname(err));
	else
		jw_null(w);
}

static void jw_ioctl_log(struct jw *w)
{
	jw_key(w, "ioctls");
	jw_value(w);
	jw_put(w, "[", 1);
	if (g_ioctl_log.len)
		jw_put(w, g_ioctl_log.buf, g_ioctl_log.len);
	jw_put(w, "]", 1);
}

/* Prints the error object for the current command (not exiting: --wait reports and goes on). */
static void report_error(const char *step, int err, const char *fmt, va_list ap)
{
	char msg[512];
	struct jw w = { 0 };
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (err && n >= 0 && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(err));
	jw_open(&w, '{');
	jw_kbool(&w, "ok", false);
	jw_kstr(&w, "command", g_command);
	jw_kstr(&w, "error", msg);
	jw_errno(&w, err);
	jw_kstr(&w, "step", step);
	if (g_ctx_session)
		jw_kstr(&w, "session", g_ctx_session);
	if (g_ctx_has_token) {
		jw_key(&w, "token");
		jw_u64str(&w, g_ctx_token);
	}
	jw_ioctl_log(&w);
	jw_close(&w, '}');
	jw_emit(&w);
	free(w.buf);
}

static void warn_error(const char *step, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report_error(step, err, fmt, ap);
	va_end(ap);
}

__attribute__((noreturn, format(printf, 3, 4))) static void fail(const char *step, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report_error(step, err, fmt, ap);
	va_end(ap);
	exit(1);
}

#define usage_fail(...) fail("usage", 0, __VA_ARGS__)

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p)
		fail("alloc", ENOMEM, "calloc(%zu, %zu)", n, size);
	return p;
}

/* ---------------------------------------------------------------------- SHA-256 ---- */

struct sha256 {
	uint32_t h[8];
	uint64_t bytes;
	uint8_t block[64];
	size_t used;
};

static const uint32_t SHA256_K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror32(uint32_t x, unsigned int n)
{
	return (x >> n) | (x << (32 - n));
}

static void sha256_init(struct sha256 *s)
{
	static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	memcpy(s->h, iv, sizeof(iv));
	s->bytes = 0;
	s->used = 0;
}

static void sha256_block(struct sha256 *s, const uint8_t *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, h;
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
		       p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
	e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = h + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & f) ^ (~e & g)) + SHA256_K[i] + w[i];
		uint32_t t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		h = g, g = f, f = e, e = d + t1;
		d = c, c = b, b = a, a = t1 + t2;
	}
	s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d;
	s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

/*
 * The same compression with the CPU's SHA-256 instructions (x86 SHA-NI, arm64 FEAT_SHA256),
 * which QEMU's TCG runs as native helpers: hashing a 256 MiB memfd goes from ~8 s to ~2 s.
 * Used only when the CPU has them and a known-answer check against the C code passes.
 */
typedef void sha256_blocks_fn(uint32_t h[8], const uint8_t *p, size_t blocks);

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define SHA256_HW_NAME "x86 sha-ni"

__attribute__((target("sha,sse4.1,ssse3"))) static void sha256_blocks_hw(uint32_t h[8], const uint8_t *p,
									size_t blocks)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xb1); /* CDAB */
	__m128i st1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1b); /* EFGH */
	__m128i st0 = _mm_alignr_epi8(tmp, st1, 8);					 /* ABEF */
	st1 = _mm_blend_epi16(st1, tmp, 0xf0);						 /* CDGH */
	for (; blocks; blocks--, p += 64) {
		__m128i abef = st0, cdgh = st1, w[4];
		for (int j = 0; j < 16; j++) {
			if (j < 4)
				w[j] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * j)), bswap);
			else
				w[j % 4] = _mm_sha256msg2_epu32(
					_mm_add_epi32(_mm_sha256msg1_epu32(w[j % 4], w[(j + 1) % 4]),
						      _mm_alignr_epi8(w[(j + 3) % 4], w[(j + 2) % 4], 4)),
					w[(j + 3) % 4]);
			__m128i msg = _mm_add_epi32(w[j % 4], _mm_loadu_si128((const __m128i *)&SHA256_K[4 * j]));
			st1 = _mm_sha256rnds2_epu32(st1, st0, msg);
			st0 = _mm_sha256rnds2_epu32(st0, st1, _mm_shuffle_epi32(msg, 0x0e));
		}
		st0 = _mm_add_epi32(st0, abef);
		st1 = _mm_add_epi32(st1, cdgh);
	}
	tmp = _mm_shuffle_epi32(st0, 0x1b);	  /* FEBA */
	st1 = _mm_shuffle_epi32(st1, 0xb1);	  /* DCHG */
	st0 = _mm_blend_epi16(tmp, st1, 0xf0); /* DCBA */
	st1 = _mm_alignr_epi8(st1, tmp, 8);	  /* HGFE */
	_mm_storeu_si128((__m128i *)&h[0], st0);
	_mm_storeu_si128((__m128i *)&h[4], st1);
}

static bool sha256_hw_present(void)
{
	unsigned int a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3))
		return false;
	return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
}
#elif defined(__aarch64__)
#include <arm_neon.h>
#include <sys/auxv.h>
#define SHA256_HW_NAME "arm64 sha2"

__attribute__((target("+crypto"))) static void sha256_blocks_hw(uint32_t h[8], const uint8_t *p, size_t blocks)
{
	uint32x4_t st0 = vld1q_u32(&h[0]), st1 = vld1q_u32(&h[4]);
	for (; blocks; blocks--, p += 64) {
		uint32x4_t abcd = st0, efgh = st1, w[4];
		for (int j = 0; j < 16; j++) {
			if (j < 4)
				w[j] = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p + 16 * j)));
			else
				w[j % 4] = vsha256su1q_u32(vsha256su0q_u32(w[j % 4], w[(j + 1) % 4]), w[(j + 2) % 4],
							   w[(j + 3) % 4]);
			uint32x4_t msg = vaddq_u32(w[j % 4], vld1q_u32(&SHA256_K[4 * j]));
			uint32x4_t prev = st0;
			st0 = vsha256hq_u32(st0, st1, msg);
			st1 = vsha256h2q_u32(st1, prev, msg);
		}
		st0 = vaddq_u32(st0, abcd);
		st1 = vaddq_u32(st1, efgh);
	}
	vst1q_u32(&h[0], st0);
	vst1q_u32(&h[4], st1);
}

static bool sha256_hw_present(void)
{
	return (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0;
}
#endif

static void sha256_blocks_c(uint32_t h[8], const uint8_t *p, size_t blocks)
{
	struct sha256 s;
	memcpy(s.h, h, sizeof(s.h));
	for (; blocks; blocks--, p += 64)
		sha256_block(&s, p);
	memcpy(h, s.h, sizeof(s.h));
}

static sha256_blocks_fn *g_sha256_blocks;
static const char *g_sha256_impl = "c";

/* Picks the instructions when present and they agree with the C code on three blocks. */
static sha256_blocks_fn *sha256_blocks(void)
{
	if (g_sha256_blocks)
		return g_sha256_blocks;
	g_sha256_blocks = sha256_blocks_c;
#ifdef SHA256_HW_NAME
	const char *force = getenv("KHO_AGENT_SHA256"); /* "c": the portable code, for comparisons */
	if (force && !strcmp(force, "c"))
		return g_sha256_blocks;
	if (sha256_hw_present()) {
		uint8_t msg[192];
		struct sha256 want;
		uint32_t got[8];
		for (size_t i = 0; i < sizeof(msg); i++)
			msg[i] = (uint8_t)(i * 131 + 7);
		sha256_init(&want);
		memcpy(got, want.h, sizeof(got));
		sha256_blocks_c(want.h, msg, 3);
		sha256_blocks_hw(got, msg, 3);
		if (!memcmp(want.h, got, sizeof(got))) {
			g_sha256_blocks = sha256_blocks_hw;
			g_sha256_impl = SHA256_HW_NAME;
		} else {
			g_sha256_impl = "c (" SHA256_HW_NAME " failed its known-answer check)";
		}
	}
#endif
	return g_sha256_blocks;
}

static void sha256_update(struct sha256 *s, const uint8_t *p, size_t n)
{
	s->bytes += n;
	if (s->used) {
		size_t take = 64 - s->used < n ? 64 - s->used : n;
		memcpy(s->block + s->used, p, take);
		s->used += take, p += take, n -= take;
		if (s->used < 64)
			return;
		sha256_block(s, s->block);
		s->used = 0;
	}
	if (n >= 64) {
		sha256_blocks()(s->h, p, n / 64);
		p += n - n % 64;
		n %= 64;
	}
	memcpy(s->block, p, n);
	s->used = n;
}

/* Finishes the hash into 64 lowercase hex digits. */
static void sha256_hex(struct sha256 *s, char out[65])
{
	uint64_t bits = s->bytes * 8;
	uint8_t pad[72] = { 0x80 };
	size_t padlen = (s->used < 56 ? 56 : 120) - s->used;
	for (int i = 0; i < 8; i++)
		pad[padlen + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
	sha256_update(s, pad, padlen + 8);
	for (int i = 0; i < 8; i++)
		snprintf(out + 8 * i, 9, "%08x", s->h[i]);
}

/* ---------------------------------------------------------------- small helpers ---- */

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

/* Unsigned integer: decimal or 0x hex (a leading 0 is not octal), with a binary K/M/G/T suffix. */
static bool parse_u64(const char *s, uint64_t *out)
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

static void boot_id(struct jw *w)
{
	jw_kfile(w, "boot_id", "/proc/sys/kernel/random/boot_id");
}

/* ------------------------------------------------------------------- LUO ioctls ---- */

/* Runs one LUO ioctl and appends it to the log; returns 0 or -errno. */
static int luo_ioctl(int fd, unsigned long cmd, const char *name, void *arg, const char *session,
		     const uint64_t *token, const int32_t *out_fd)
{
	int ret = ioctl(fd, cmd, arg);
	int err = ret < 0 ? errno : 0;
	char hex[16];
	struct jw *w = &g_ioctl_log;

	jw_open(w, '{');
	jw_kstr(w, "ioctl", name);
	snprintf(hex, sizeof(hex), "0x%lx", cmd);
	jw_kstr(w, "cmd", hex);
	if (session)
		jw_kstr(w, "session", session);
	if (token) {
		jw_key(w, "token");
		jw_u64str(w, *token);
	}
	jw_ki64(w, "ret", ret);
	if (err)
		jw_errno(w, err);
	else if (out_fd)
		jw_ki64(w, "fd", *out_fd);
	jw_close(w, '}');
	return err ? -err : 0;
}

/* Names are copied raw (up to 64 bytes, no forced NUL) so the kernel's own checks can be tested. */
static void copy_name(uint8_t dst[LIVEUPDATE_SESSION_NAME_LENGTH], const char *name)
{
	size_t n = strlen(name);
	memset(dst, 0, LIVEUPDATE_SESSION_NAME_LENGTH);
	memcpy(dst, name, n < LIVEUPDATE_SESSION_NAME_LENGTH ? n : LIVEUPDATE_SESSION_NAME_LENGTH);
}

/* Returns the new session fd, or -errno. */
static int luo_create_session(int luo_fd, const char *name)
{
	struct liveupdate_ioctl_create_session arg = { .size = sizeof(arg), .fd = -1 };
	copy_name(arg.name, name);
	int r = luo_ioctl(luo_fd, LIVEUPDATE_IOCTL_CREATE_SESSION, "CREATE_SESSION", &arg, name, NULL, &arg.fd);
	return r < 0 ? r : arg.fd;
}

/* Returns the incoming session's fd, or -errno. */
static int luo_retrieve_session(int luo_fd, const char *name)
{
	struct liveupdate_ioctl_retrieve_session arg = { .size = sizeof(arg), .fd = -1 };
	copy_name(arg.name, name);
	int r = luo_ioctl(luo_fd, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "RETRIEVE_SESSION", &arg, name, NULL,
			  &arg.fd);
	return r < 0 ? r : arg.fd;
}

static int luo_preserve_fd(int session_fd, const char *session, int fd, uint64_t token)
{
	struct liveupdate_session_preserve_fd arg = { .size = sizeof(arg), .fd = fd, .token = token };
	return luo_ioctl(session_fd, LIVEUPDATE_SESSION_PRESERVE_FD, "PRESERVE_FD", &arg, session, &token, NULL);
}

/* Returns the retrieved file's fd, or -errno. */
static int luo_retrieve_fd(int session_fd, const char *session, uint64_t token)
{
	struct liveupdate_session_retrieve_fd arg = { .size = sizeof(arg), .fd = -1, .token = token };
	int r = luo_ioctl(session_fd, LIVEUPDATE_SESSION_RETRIEVE_FD, "RETRIEVE_FD", &arg, session, &token,
			  &arg.fd);
	return r < 0 ? r : arg.fd;
}

static int luo_finish(int session_fd, const char *session)
{
	struct liveupdate_session_finish arg = { .size = sizeof(arg) };
	return luo_ioctl(session_fd, LIVEUPDATE_SESSION_FINISH, "FINISH", &arg, session, NULL, NULL);
}

/* Fills out[65] with the kernel's idea of the session name; returns 0 or -errno. */
static int luo_get_name(int session_fd, const char *session, char out[LIVEUPDATE_SESSION_NAME_LENGTH + 1])
{
	struct liveupdate_session_get_name arg = { .size = sizeof(arg) };
	int r = luo_ioctl(session_fd, LIVEUPDATE_SESSION_GET_NAME, "GET_NAME", &arg, session, NULL, NULL);
	memcpy(out, arg.name, LIVEUPDATE_SESSION_NAME_LENGTH);
	out[LIVEUPDATE_SESSION_NAME_LENGTH] = '\0';
	return r;
}

#ifndef LIVEUPDATE_DEV
#define LIVEUPDATE_DEV "/dev/liveupdate" /* tests build with a stand-in */
#endif

static int open_liveupdate(void)
{
	int fd = open(LIVEUPDATE_DEV, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		fail("open_liveupdate", errno, "open %s", LIVEUPDATE_DEV);
	return fd;
}

static void jw_session_name(struct jw *w, int session_fd, const char *session)
{
	char name[LIVEUPDATE_SESSION_NAME_LENGTH + 1];
	jw_key(w, "get_name");
	if (luo_get_name(session_fd, session, name) == 0)
		jw_str(w, name);
	else
		jw_null(w);
}

/* ----------------------------------------------------------- specs from the command line ---- */

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

static void jw_seals(struct jw *w, unsigned int seals)
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

/* One parser for every command; each command then rejects what it does not use. */
static struct opts parse_opts(int argc, char **argv, bool need_size)
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

/* ------------------------------------------------------------- the fill pattern ---- */

/*
 * Byte o of a memfd with seed S is byte (o % 8) (little-endian) of splitmix64(S, o / 8):
 * it depends only on the offset, so write()/mmap fills, sparse files and the host's own
 * model all agree. The host mirrors this in src/guest/agent-build.ts (memfdPattern).
 */
static uint64_t pattern_word(uint64_t seed, uint64_t index)
{
	uint64_t z = seed + (index + 1) * 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint8_t pattern_byte(uint64_t seed, uint64_t o)
{
	return (uint8_t)(pattern_word(seed, o / 8) >> (8 * (o % 8)));
}

/* Byte b of word w is w >> 8b: the word's little-endian layout, stored whole where aligned
 * (a byte loop costs 8x the instructions, which TCG makes seconds for 256 MiB). */
static void pattern_fill(uint64_t seed, uint64_t off, uint8_t *buf, size_t len)
{
	size_t i = 0;
	for (; i < len && (off + i) % 8; i++)
		buf[i] = pattern_byte(seed, off + i);
	for (; i + 8 <= len; i += 8) {
		uint64_t w = htole64(pattern_word(seed, (off + i) / 8));
		memcpy(buf + i, &w, 8);
	}
	for (; i < len; i++)
		buf[i] = pattern_byte(seed, off + i);
}

static bool page_written(const struct memfd_spec *m, uint64_t page)
{
	return m->sparse <= 1 || page % m->sparse == 0;
}

/* How far the fill writes: truncate=BIG grows the file past its final size first. */
static uint64_t fill_end(const struct memfd_spec *m)
{
	return m->has_truncate && m->truncate > m->size ? m->truncate : m->size;
}

/* Where data ends in the final file: truncate=SMALL cuts it and regrows with zeros. */
static uint64_t data_end(const struct memfd_spec *m)
{
	return m->has_truncate && m->truncate < m->size ? m->truncate : m->size;
}

/* The contents the spec must produce in [off, off + len): pattern in written pages, zeros elsewhere. */
static void expected_fill(const struct memfd_spec *m, uint64_t off, uint8_t *buf, size_t len)
{
	uint64_t end = off + len, live = data_end(m);
	uint64_t seed = m->has_rewrite ? m->rewrite_seed : m->seed;
	memset(buf, 0, len);
	for (uint64_t o = off; o < end && o < live;) {
		uint64_t page = o / g_page_size, next = (page + 1) * g_page_size;
		if (next > end)
			next = end;
		if (next > live)
			next = live;
		if (page_written(m, page))
			pattern_fill(seed, o, buf + (o - off), (size_t)(next - o));
		o = next;
	}
}

/* ---------------------------------------------------------------- memfd helpers ---- */

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

/* Creates and fills the memfd the spec describes; sealing comes last. */
static void create_memfd(struct memfd_spec *m)
{
	char name[48];
	snprintf(name, sizeof(name), "kho-agent-%" PRIu64, m->token);
	m->fd = memfd_create(name, MFD_CLOEXEC | (m->seals ? MFD_ALLOW_SEALING : 0) | (m->hugetlb ? MFD_HUGETLB : 0));
	if (m->fd < 0)
		fail("memfd_create", errno, "memfd_create(%s)", name);
	uint64_t end = fill_end(m);
	if (ftruncate(m->fd, (off_t)end))
		fail("ftruncate", errno, "ftruncate to %" PRIu64, end);
	if (m->fallocate && end && fallocate(m->fd, 0, 0, (off_t)end))
		fail("fallocate", errno, "fallocate of %" PRIu64 " bytes", end);
	if (m->mmap_fill)
		fill_by_mmap(m, end);
	else
		fill_by_write(m, end);
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
static void rewrite_memfd(const struct memfd_spec *m)
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
static void probe_freeze(struct jw *w, int fd)
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

/* --------------------------------------------------------------------- reporting ---- */

/*
 * The contents: their SHA-256 (unless nohash) and, with `check`, the first byte that differs
 * from the model of the spec. Without a hash the check alone vouches for the bytes: it costs
 * one pattern word per 8 bytes, where SHA-256 of 256 MiB takes seconds under TCG.
 */
static void report_contents(struct jw *w, const struct memfd_spec *m, uint64_t size, bool check)
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

/* Maps the memfd, faults every page in, and reports its frames from /proc/self/pagemap. */
static void report_pages(struct jw *w, const struct memfd_spec *m, uint64_t size)
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
static uint64_t report_file(struct jw *w, int fd)
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

static void jw_fill_spec(struct jw *w, const struct memfd_spec *m)
{
	jw_key(w, "seed");
	jw_u64str(w, m->seed);
	jw_kstr(w, "fill", m->mmap_fill ? "mmap" : "write");
	jw_kbool(w, "thp", m->thp);
	jw_kbool(w, "hugetlb", m->hugetlb);
	jw_ku64(w, "sparse", m->sparse);
}

/* -------------------------------------------------------------- kexec and reboot ---- */

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

static void fail_load(const struct kexec_load_job *j)
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

static void kexec_load(struct jw *w, const struct kexec_opts *k)
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

static void start_background_load(const struct kexec_opts *k)
{
	prepare_load(&g_load, k);
	int err = pthread_create(&g_load.thread, NULL, run_load, &g_load);
	if (err)
		fail("pthread_create", err, "start the kexec load");
	g_load.in_background = true;
}

/* Waits for the background load, if any; false when it failed (g_load.err says why). */
static bool background_load_done(void)
{
	if (g_load.in_background) {
		pthread_join(g_load.thread, NULL);
		g_load.in_background = false;
	}
	return g_load.err == 0;
}

/* Returns only on failure, with errno set. */
static void reboot_kexec(void)
{
	sync();
	syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_KEXEC, NULL);
}

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
				fail_load(&g_load);
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

/* ------------------------------------------------------------------ KHO state ---- */

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
static void jw_kho_state(struct jw *w)
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

/* Common tail of preserve and restore: optional kexec load, the result line, then wait or kexec. */
static int finish_command(struct jw *w, const struct opts *o)
{
	g_ctx_session = NULL;
	g_ctx_has_token = false;
	if (o->kho_state)
		jw_kho_state(w);
	if (g_load.in_background)
		jw_kexec_load(w, &g_load);
	else if (o->kexec.kernel)
		kexec_load(w, &o->kexec);
	else {
		jw_key(w, "kexec_load");
		jw_null(w);
	}
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
	jw_kbool(&w, "uapi_header", AGENT_UAPI_HEADER);
	sha256_blocks();
	jw_kstr(&w, "sha256_impl", g_sha256_impl);
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
	g_command = "none";
	usage_fail("unknown command \"%s\" (preserve, restore, kexec, info)", argv[1]);
}
