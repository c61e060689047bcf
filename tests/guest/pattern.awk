# The test guest's disk pattern, shared by its /init (busybox awk) and the
# host's check (expect.sh, the host's awk): COUNT sectors of 512 bytes
# starting at LBA FIRST, each one line naming the seed, the region and its
# own LBA, padded with spaces to 511 bytes and ended by a newline. Every
# sector of every boot is distinct, so a write that lands at the wrong
# place, or data of another boot, shows as a named mismatch.
#   awk -v seed=S -v region=NAME -v first=LBA -v count=N -f pattern.awk
BEGIN {
	for (i = 0; i < count; i++)
		printf "%-511s\n", sprintf("VCGUEST seed=%s region=%s lba=%d", seed, region, first + i)
}
