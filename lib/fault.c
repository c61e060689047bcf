/*
 * fault.c - test-only fault injection (see fault.h).
 */
#ifdef VC_FAULT_INJECT
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fault.h"
#include "log.h"

#define FAULT_RULES_MAX	16

struct fault_rule {
	enum vc_fault_point point;
	unsigned long first;	/* 1-based call number */
	bool and_later;		/* first and every later call */
	int err;		/* -errno, or 0 with delay_ms */
	unsigned delay_ms;
};

static const char *const fault_names[VC_FAULT_NPOINTS] = {
	[VC_FAULT_FSYNC] = "fsync",
	[VC_FAULT_READ] = "read",
	[VC_FAULT_WRITE] = "write",
	[VC_FAULT_FALLOCATE] = "fallocate",
	[VC_FAULT_URING_SUBMIT] = "uring_submit",
	[VC_FAULT_RING_SETUP] = "ring_setup",
	[VC_FAULT_RING_THREAD] = "ring_thread",
	[VC_FAULT_RING_REGISTER] = "ring_register",
	[VC_FAULT_OPEN] = "open",
	[VC_FAULT_RING_FALLBACK] = "ring_fallback",
	[VC_FAULT_CLOSE_RANGE] = "close_range",
	[VC_FAULT_NO_CACHESTAT] = "cachestat",
	[VC_FAULT_SERVE] = "serve",
	[VC_FAULT_OOM_ADJ] = "oom_score_adj",
	[VC_FAULT_TAKEOVER_INIT] = "takeover_init",
	[VC_FAULT_CONTROL_OPEN] = "control_open",
};

static const struct { const char *name; int err; } fault_errnos[] = {
	{ "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT },
	{ "EINTR", EINTR }, { "EAGAIN", EAGAIN }, { "EBUSY", EBUSY },
	{ "EINVAL", EINVAL }, { "ENOMEM", ENOMEM }, { "EACCES", EACCES },
	{ "EPERM", EPERM }, { "EADDRINUSE", EADDRINUSE },
};

/* Set once at start, before any thread runs; read-only afterwards. */
static struct fault_rule fault_rules[FAULT_RULES_MAX];
static unsigned fault_nrules;
static unsigned long fault_calls[VC_FAULT_NPOINTS];	/* atomic */

static int
fault_parse_one(char *item)
{
	char *point = strtok(item, ":"), *which = strtok(NULL, ":"),
	    *action = strtok(NULL, ":"), *end;
	struct fault_rule r = { .point = VC_FAULT_NPOINTS };

	if (point == NULL || which == NULL || action == NULL)
		return -EINVAL;
	for (unsigned i = 0; i < VC_FAULT_NPOINTS; i++)
		if (fault_names[i] != NULL && strcmp(point, fault_names[i]) == 0)
			r.point = (enum vc_fault_point)i;
	if (r.point == VC_FAULT_NPOINTS)
		return -EINVAL;
	if (strcmp(which, "*") == 0) {
		r.first = 1;
		r.and_later = true;
	} else {
		r.first = strtoul(which, &end, 10);
		if (end == which || r.first == 0)
			return -EINVAL;
		if (*end == '+') {
			r.and_later = true;
			end++;
		}
		if (*end != '\0')
			return -EINVAL;
	}
	if (strncmp(action, "delay=", 6) == 0) {
		r.delay_ms = (unsigned)strtoul(action + 6, &end, 10);
		if (end == action + 6 || *end != '\0')
			return -EINVAL;
	} else {
		for (size_t i = 0; i < sizeof(fault_errnos) / sizeof(fault_errnos[0]); i++)
			if (strcmp(action, fault_errnos[i].name) == 0)
				r.err = -fault_errnos[i].err;
		if (r.err == 0)
			return -EINVAL;
	}
	if (fault_nrules == FAULT_RULES_MAX)
		return -E2BIG;
	fault_rules[fault_nrules++] = r;
	return 0;
}

int
fault_init(const char *spec)
{
	char *copy, *item, *save = NULL;
	int err = 0;

	fault_nrules = 0;
	if (spec == NULL || *spec == '\0')
		return 0;
	copy = strdup(spec);
	if (copy == NULL)
		return -ENOMEM;
	for (item = strtok_r(copy, ",", &save); item != NULL && err == 0;
	    item = strtok_r(NULL, ",", &save)) {
		char one[128];

		snprintf(one, sizeof(one), "%s", item);
		err = fault_parse_one(one);
		if (err < 0)
			log_warnx("VCACHEFS_FAULT: bad rule '%s' (POINT:N|N+|*:"
			    "ERRNO|delay=MS)", item);
	}
	free(copy);
	if (err == 0)
		log_warnx("fault injection active: %s", spec);
	return err;
}

int
fault_hit(enum vc_fault_point p)
{
	unsigned long n;

	if (fault_nrules == 0)
		return 0;
	n = __atomic_add_fetch(&fault_calls[p], 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < fault_nrules; i++) {
		const struct fault_rule *r = &fault_rules[i];

		if (r->point != p || n < r->first || (!r->and_later && n != r->first))
			continue;
		if (r->err != 0)
			return r->err;
		struct timespec ts = {
			.tv_sec = r->delay_ms / 1000,
			.tv_nsec = (long)(r->delay_ms % 1000) * 1000000L,
		};
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
	}
	return 0;
}
#endif
