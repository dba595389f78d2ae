/* SPDX-License-Identifier: GPL-2.0 */
/* What the agent's files share, init.c among them (it uses read_text() and guest_init() alone). */
#ifndef KHO_AGENT_H
#define KHO_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reads a small text file, trailing newlines and spaces cut; false if it cannot be read. */
bool read_text(const char *path, char *buf, size_t len);

/* The guest's /init (init.c): kho-agent runs it when started as "init". Never returns. */
int guest_init(void);

/* The rest is kho-agent.c's, set up by its main(). */

/* sysconf(_SC_PAGESIZE) */
extern uint64_t g_page_size;

/* Where the agent's own time went, summed over memfds (ms): "timings_ms" in every result. */
struct agent_timings {
	double fill, preserve_fd, retrieve_fd, contents, pages, kexec_load;
};
extern struct agent_timings g_ms;

/* "kho-agent ops": LUO operations from stdin (ops.c). */
int cmd_ops(int argc, char **argv);

/* CLOCK_MONOTONIC in ms. */
double now_ms(void);

#endif
