/*
 * checkconf.h - vcachefs --check-config: what each image would get.
 */
#ifndef VC_CHECKCONF_H
#define VC_CHECKCONF_H

#include <stdio.h>

struct vc_config;
struct vc_resolver;

/*
 * Print to out "CONFIG: configuration OK" (CONFIG is cfg->path, or
 * "built-in defaults"), then one line per regular file under the
 * directory srcfd, recursively, sorted by relative path (bytewise):
 *
 *   RELPATH: cache=MODE aio=AIO readonly=yes|no (from [SECTION])
 *
 * AIO is the effective engine; a native that falls back reads
 * "aio=threads (native needs O_DIRECT: cache=none or directsync)".
 * SECTION is the matching rule's pattern or "global". Symbolic links are
 * neither listed nor followed. srcfd is not closed or moved; srcname
 * names it in messages. A directory that cannot be read is logged with
 * log_warnc() and skipped. Returns 0, or the first -errno met.
 */
int checkconf_print(const struct vc_config *cfg, struct vc_resolver *rs,
    int srcfd, const char *srcname, FILE *out);

/*
 * A warning for each section (not [global], not a format section) that
 * names no regular file under srcfd, exact name or glob:
 *   "CONFIG:LINE: warning: [PATTERN] matches no file under SRCNAME"
 * passed to say(line, arg), or logged with log_warnx() when say is NULL.
 * checkconf_print() logs the same warnings first. It is only a warning:
 * the configuration stays valid. Returns the number of warnings or -errno.
 */
int checkconf_unmatched(const struct vc_config *cfg, int srcfd,
    const char *srcname, void (*say)(const char *line, void *arg), void *arg);

#endif
