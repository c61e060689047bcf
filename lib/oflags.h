/*
 * oflags.h - a descriptor's open flags as the kernel keeps them, and
 * their names ("O_RDWR|O_DIRECT|O_LARGEFILE|O_CLOEXEC").
 */
#ifndef VC_OFLAGS_H
#define VC_OFLAGS_H

#include <stddef.h>

/*
 * The "flags:" of /proc/self/fdinfo/FD: the file's open flags with
 * O_CLOEXEC for the descriptor, exactly as fdinfo shows them to anyone
 * who compares. Returns 0, or -errno.
 */
int oflags_fdinfo(int fd, unsigned *flags);

/*
 * Name flags, the kernel's values, into buf: the access mode first, then
 * each known bit; bits without a name in octal. Returns buf.
 */
char *oflags_names(unsigned flags, char *buf, size_t len);

#endif
