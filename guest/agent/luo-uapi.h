/* SPDX-License-Identifier: GPL-2.0-only */
/* The LUO uapi: the kernel's header when the build has it, else the (stable) ABI copied here. */
#ifndef KHO_AGENT_LUO_UAPI_H
#define KHO_AGENT_LUO_UAPI_H

#include <stdint.h>
#include <sys/ioctl.h>

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

#endif
