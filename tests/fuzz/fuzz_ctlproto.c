/*
 * fuzz_ctlproto.c - libFuzzer target for the control protocol parser
 * (ctl_parse, ctl_decode, ctl_record_parse). Besides the sanitizers'
 * checks it traps when a result breaks the contracts in ctlproto.h.
 *
 *   make fuzz-build && build/fuzz/fuzz_ctlproto -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctlproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static struct ctl_req fuzz_req;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256], *copy, enc[CTL_REQ_MAX * 3 + 1], dec[CTL_REQ_MAX + 1];
	struct ctl_record rec;

	err[0] = '\0';
	if (ctl_parse((const char *)data, size, &fuzz_req, err, sizeof(err)) == 0) {
		FUZZ_CHECK(fuzz_req.cmd < CTL_NCMDS);
		FUZZ_CHECK(fuzz_req.nargs <= CTL_MAX_ARGS);
		for (unsigned i = 0; i < fuzz_req.nargs; i++) {
			/* Every name re-encodes and decodes to itself. */
			FUZZ_CHECK(fuzz_req.args[i][0] != '\0');
			FUZZ_CHECK(ctl_encode(fuzz_req.args[i], enc, sizeof(enc)) >= 0);
			FUZZ_CHECK(ctl_decode(enc, strlen(enc), dec) >= 0);
			FUZZ_CHECK(strcmp(dec, fuzz_req.args[i]) == 0);
		}
	} else {
		/* An error is one printable line. */
		FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)));
		for (const char *p = err; *p; p++)
			FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
	}
	copy = malloc(size + 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	(void)ctl_record_parse(copy, &rec);
	FUZZ_CHECK(rec.n <= CTL_MAX_PAIRS);
	free(copy);
	return 0;
}
