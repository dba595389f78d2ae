/* SPDX-License-Identifier: GPL-2.0 */
/* What kho-agent.c and init.c share. */
#ifndef KHO_AGENT_H
#define KHO_AGENT_H

#include <stdbool.h>
#include <stddef.h>

/* Reads a small text file, trailing newlines and spaces cut; false if it cannot be read. */
bool read_text(const char *path, char *buf, size_t len);

/* The guest's /init (init.c): kho-agent runs it when started as "init". Never returns. */
int guest_init(void);

#endif
