/* SPDX-License-Identifier: GPL-2.0-only */
/* --kho-state: KHO's debugfs FDTs and the System RAM lines of /proc/iomem. */
#ifndef KHO_AGENT_KHO_H
#define KHO_AGENT_KHO_H

#include "json.h"

/* "kho":{"out_fdt":b64|null,"in_fdt":b64|null,"system_ram":str} */
void jw_kho_state(struct jw *w);

#endif
