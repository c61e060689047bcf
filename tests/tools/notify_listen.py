#!/usr/bin/env python3
"""Stand in for systemd's notification socket, for the readiness tests.

usage: notify_listen.py SOCKET LOG MOUNTPOINT FILE

Binds the datagram socket SOCKET and appends every message to LOG, one
"MSG <message with newlines as |>" line each, with the sender's pid
(SCM_CREDENTIALS) as "PID <pid>". On the first READY=1 it checks at once,
before reading anything else, what the service manager would rely on:
  CHECK waiting=<N>  requests of the connection still unanswered
                     (/sys/fs/fuse/connections/<minor>/waiting; a READY=1
                     sent before the daemon answered INIT leaves >= 1)
  CHECK mounted=<type>  the type of the topmost mount at MOUNTPOINT
  CHECK read=<text>     what FILE (below MOUNTPOINT) reads
Creates SOCKET.ready once listening. Runs until killed.
"""
import os
import socket
import struct
import sys

sock_path, log_path, mnt, name = sys.argv[1:5]


def topmost(mountpoint):
    """(type, minor) of the last mount listed at mountpoint, or (None, None)."""
    found = (None, None)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[4] == mountpoint:
                found = (fields[sep + 1], int(fields[2].split(":")[1]))
    return found


def log(line):
    with open(log_path, "a") as f:
        f.write(line + "\n")


s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(sock_path)
open(sock_path + ".ready", "w").close()
ready_seen = False
while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            log("PID %d" % struct.unpack("iII", data[:12])[0])
    text = msg.decode(errors="replace")
    log("MSG " + text.replace("\n", "|"))
    if "READY=1" in text.split("\n") and not ready_seen:
        ready_seen = True
        fstype, minor = topmost(mnt)
        try:
            with open("/sys/fs/fuse/connections/%d/waiting" % minor) as f:
                log("CHECK waiting=" + f.read().strip())
        except (OSError, TypeError) as e:
            log("CHECK waiting=unknown (%s)" % e)
        log("CHECK mounted=%s" % fstype)
        try:
            with open(os.path.join(mnt, name)) as f:
                log("CHECK read=" + f.read().strip())
        except OSError as e:
            log("CHECK read-error=%s" % e)
