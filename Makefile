# vcachefs - per-image cache modes for VM disk images, as a FUSE layer.
#
#   make            build build/vcachefs
#   make check      install missing dependencies (as root), build, run all tests
#   make demo       build and mount a demo image directory in the foreground
#   make install    install binaries, systemd unit, man pages, the libvirt
#                   hook and the sample config (PREFIX, SBINDIR, MANDIR,
#                   SYSCONFDIR, UNITDIR, HOOKDIR, DESTDIR)
#   make uninstall  remove them again (an edited /etc/vcachefs.conf stays)
#   make deb        build the Debian package into build/deb/ (DEB_DIR)

VERSION   := 0.1.0
PREFIX    ?= /usr/local
SBINDIR   ?= $(PREFIX)/sbin
MANDIR    ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
# systemd reads units from /usr/local/lib/systemd/system too; with
# PREFIX=/usr, Debian 12's place for a package's units (dh_installsystemd).
UNITDIR   ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)
DESTDIR   ?=
# libvirtd (6.5+) runs every executable in its qemu.d directory; it reads
# the directory when it starts.
HOOKDIR   ?= $(SYSCONFDIR)/libvirt/hooks/qemu.d

CC        ?= cc
PKGS      := fuse3 liburing inih libqcow libsystemd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN      := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS    ?= -O2 -g
# CPPFLAGS and LDFLAGS are the builder's (dpkg-buildflags: fortify, relro, now).
ALL_CFLAGS := -std=gnu11 $(WARN) -D_GNU_SOURCE -DVC_VERSION='"$(VERSION)"' \
	-Ilib $(PKG_CFLAGS) $(CPPFLAGS) $(CFLAGS)
# libgcc_s loaded at start: glibc dlopens it at the first pthread_cancel
# (libfuse's loop ends that way), which fails once descriptors run out.
LDLIBS    := $(PKG_LIBS) -lpthread -Wl,--push-state,--no-as-needed -lgcc_s -Wl,--pop-state

# The sanitized build the tests run also carries the fault-injection hook (lib/fault.h).
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
	-DVC_FAULT_INJECT

LIB_SRC   := $(wildcard lib/*.c)
DAEMON_SRC := $(wildcard vcachefs/*.c)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
TOOL_SRC  := $(wildcard tests/tools/*.c)
CTL_SRC   := $(wildcard vcachefsctl/*.c)

B  := build
BA := build/asan

LIB_OBJ    := $(LIB_SRC:%.c=$(B)/obj/%.o)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(B)/obj/%.o)
LIB_AOBJ   := $(LIB_SRC:%.c=$(BA)/obj/%.o)
DAEMON_AOBJ := $(DAEMON_SRC:%.c=$(BA)/obj/%.o)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BA)/unit/%)
TOOL_BIN   := $(TOOL_SRC:tests/tools/%.c=$(B)/tools/%)
# vcachefsctl needs only the protocol from lib/.
CTL_OBJ    := $(CTL_SRC:%.c=$(B)/obj/%.o) $(B)/obj/lib/ctlproto.o
CTL_AOBJ   := $(CTL_SRC:%.c=$(BA)/obj/%.o) $(BA)/obj/lib/ctlproto.o

.PHONY: all asan check unit deps demo install uninstall clean
all: $(B)/vcachefs $(B)/vcachefsctl

$(B)/obj/%.o: %.c $(wildcard lib/*.h vcachefs/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BA)/obj/%.o: %.c $(wildcard lib/*.h vcachefs/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -c -o $@ $<

$(B)/vcachefs: $(DAEMON_OBJ) $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BA)/vcachefs: $(DAEMON_AOBJ) $(LIB_AOBJ)
	$(CC) $(CFLAGS) $(SAN_FLAGS) -o $@ $^ $(LDLIBS)

$(B)/vcachefsctl: $(CTL_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^

$(BA)/vcachefsctl: $(CTL_AOBJ)
	$(CC) $(CFLAGS) $(SAN_FLAGS) -o $@ $^

$(BA)/unit/%: tests/unit/%.c $(LIB_AOBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -o $@ $^ $(LDLIBS)

$(B)/tools/%: tests/tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)

asan: $(BA)/vcachefs $(BA)/vcachefsctl $(UNIT_BIN) $(TOOL_BIN)

deps:
	@tests/deps.sh

# deps runs first and alone: pkg-config flags are read again by the sub-make.
check: deps
	@$(MAKE) --no-print-directory all asan
	@tests/run

unit: $(UNIT_BIN)

# The test guest of tests/bats/guest.bats, from Debian packages; cached.
.PHONY: guest
guest:
	@tests/guest/mkguest.sh $(B)/guest

demo: deps
	@$(MAKE) --no-print-directory all
	@tests/demo.sh

# mount(8) starts daemons of fuse.* types through mount.fuse3, which runs
# "vcachefs ..." by /bin/sh with PATH removed: dash then searches
# /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin, so the
# default SBINDIR of either PREFIX (/usr/local or /usr) works for fstab.
# The unit names the binaries by SBINDIR. An existing vcachefs.conf is
# never replaced.
install: all
	install -D -m 0755 $(B)/vcachefs $(DESTDIR)$(SBINDIR)/vcachefs
	install -D -m 0755 $(B)/vcachefsctl $(DESTDIR)$(SBINDIR)/vcachefsctl
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/usr/sbin/|$(SBINDIR)/|g' etc/vcachefs@.service \
	    >$(DESTDIR)$(UNITDIR)/vcachefs@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/vcachefs@.service
	install -D -m 0644 man/vcachefsctl.8 $(DESTDIR)$(MANDIR)/man8/vcachefsctl.8
	install -D -m 0644 man/vcachefs.8 $(DESTDIR)$(MANDIR)/man8/vcachefs.8
	install -D -m 0644 man/vcachefs.conf.5 $(DESTDIR)$(MANDIR)/man5/vcachefs.conf.5
	install -D -m 0755 etc/libvirt/hooks/qemu.d/vcachefs $(DESTDIR)$(HOOKDIR)/vcachefs
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/vcachefs.conf ]; then \
		echo "$(DESTDIR)$(SYSCONFDIR)/vcachefs.conf exists: left as it is"; \
	else \
		echo "install -D -m 0644 etc/vcachefs.conf $(DESTDIR)$(SYSCONFDIR)/vcachefs.conf"; \
		install -D -m 0644 etc/vcachefs.conf $(DESTDIR)$(SYSCONFDIR)/vcachefs.conf; \
	fi

# The configuration goes only if it is still the sample, unchanged.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/vcachefs $(DESTDIR)$(SBINDIR)/vcachefsctl \
	    $(DESTDIR)$(UNITDIR)/vcachefs@.service \
	    $(DESTDIR)$(MANDIR)/man8/vcachefs.8 $(DESTDIR)$(MANDIR)/man8/vcachefsctl.8 \
	    $(DESTDIR)$(MANDIR)/man5/vcachefs.conf.5 $(DESTDIR)$(HOOKDIR)/vcachefs
	@if cmp -s etc/vcachefs.conf $(DESTDIR)$(SYSCONFDIR)/vcachefs.conf; then \
		echo "rm -f $(DESTDIR)$(SYSCONFDIR)/vcachefs.conf"; \
		rm -f $(DESTDIR)$(SYSCONFDIR)/vcachefs.conf; \
	elif [ -e $(DESTDIR)$(SYSCONFDIR)/vcachefs.conf ]; then \
		echo "$(DESTDIR)$(SYSCONFDIR)/vcachefs.conf differs from the sample: kept"; \
	fi

clean:
	rm -rf $(B)

# make deb: dpkg-buildpackage in a copy of the tree under DEB_DIR (it writes
# its results to the parent directory, and debian/rules clean runs make
# clean); the copy goes once the package is built.
DEB_DIR ?= $(B)/deb
.PHONY: deb
deb:
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/vcachefs-$(VERSION)
	tar -c --exclude-vcs --exclude=./build --exclude=./demo -f - . | \
	    tar -x -C $(DEB_DIR)/vcachefs-$(VERSION) -f -
	cd $(DEB_DIR)/vcachefs-$(VERSION) && dpkg-buildpackage -us -uc -b
	rm -rf $(DEB_DIR)/vcachefs-$(VERSION)
	@ls -1 $(DEB_DIR)/*.deb

.PHONY: bench
bench: all
	@tests/bench.sh

# libFuzzer target for the qcow2 header parser and backing name resolver.
# Needs clang and its runtime (Debian: clang, libclang-rt-14-dev).
FUZZ_CC    ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_TIME  ?= 60

.PHONY: fuzz fuzz-build
fuzz-build: $(B)/fuzz/fuzz_qcow2 $(B)/fuzz/fuzz_ctlproto

$(B)/fuzz/fuzz_qcow2: tests/fuzz/fuzz_qcow2.c lib/qcow2.c lib/qcow2.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=gnu11 $(WARN) -D_GNU_SOURCE -Ilib $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_qcow2.c lib/qcow2.c

$(B)/fuzz/fuzz_ctlproto: tests/fuzz/fuzz_ctlproto.c lib/ctlproto.c lib/ctlproto.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=gnu11 $(WARN) -D_GNU_SOURCE -Ilib $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_ctlproto.c lib/ctlproto.c

# make fuzz: run for FUZZ_TIME seconds. New inputs go to build/fuzz/corpus;
# tests/images/bad is only read.
fuzz: deps $(B)/fuzz/fuzz_qcow2 $(B)/fuzz/fuzz_ctlproto
	@mkdir -p $(B)/fuzz/corpus $(B)/fuzz/corpus_ctl
	$(B)/fuzz/fuzz_qcow2 $(B)/fuzz/corpus tests/images/bad -max_len=8192 -max_total_time=$(FUZZ_TIME)
	$(B)/fuzz/fuzz_ctlproto $(B)/fuzz/corpus_ctl -max_len=5000 -max_total_time=$(FUZZ_TIME)
