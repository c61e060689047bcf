/*
 * takeover.h - handing a mounted FUSE connection to a new daemon
 * (vcachefs --takeover), so that an upgrade never unmounts the images.
 *
 * The new daemon connects to the mount's control socket and sends
 * "takeover". The old one stops reading requests, waits until every
 * request it has read is answered (devio.h), and sends its /dev/fuse
 * descriptor, the source directory's descriptor, and its state
 * (handover.h) in a memfd, with SCM_RIGHTS, then the descriptors of the
 * looked-up inodes. The new one rebuilds the inodes, images and
 * directory handles at the kernel's numbers, replays the kernel's INIT
 * and checks that it negotiates the same, and answers "ack"; the old one
 * closes its control socket, says "ok" and leaves without unmounting.
 * Anything else (a refusal, a timeout, a dropped connection) leaves the
 * old daemon serving; the new one then exits without touching the mount.
 * See vcachefsctl(8), PROTOCOL, for the messages.
 */
#ifndef VC_TAKEOVER_H
#define VC_TAKEOVER_H

#include <stdbool.h>
#include <stddef.h>

#include "fs.h"
#include "handover.h"

/* How long the old daemon waits for its requests, and for the ack. */
#define TAKEOVER_DRAIN_MS	10000
#define TAKEOVER_ACK_MS		60000

/* --- the old daemon (control thread) --- */

/*
 * Serve a "takeover" request on the control connection cfd (the caller's
 * control thread; other requests wait). listener(false) is called once the
 * new daemon has acked, before "ok", so it can bind the socket. Returns 1
 * when the connection is handed over (the session loop is ending), or
 * -errno with why filled: the caller replies "error why" and the daemon
 * goes on serving.
 */
int takeover_give(struct vc_fs *fs, int cfd, void (*listener)(bool reopen),
    char *why, size_t whylen);
/* Whether this daemon gave its connection away (then: no unmount). */
bool takeover_given(void);
/*
 * For the stop thread, around an unmount or abort: true (then call
 * takeover_stop_end()), or false while a takeover is paused or done,
 * when the mount must be left alone (it is, or may become, the new
 * daemon's).
 */
bool takeover_stop_begin(void);
void takeover_stop_end(void);
/* A handover (takeover_give(), fdstore_give()) is under way, or no
 * longer: false when a stop already ended the session. */
bool takeover_set_busy(struct vc_fs *fs, bool busy);

/* What a handover sends, for takeover_give() and fdstore_give(). */
struct vc_takeover_pack {
	int memfd;		/* the state (handover.h) */
	size_t size;
	int *fds;		/* copies of the inodes' descriptors */
	unsigned nfds;
	size_t ninodes, nimages, ndirs;
};

/* Whether this daemon can hand over at all: 0, or -errno with why. */
int takeover_check(struct vc_fs *fs, char *why, size_t whylen);
/* The state of fs, paused and drained. Returns 0 or -errno. */
int takeover_pack(struct vc_fs *fs, struct vc_takeover_pack *p);
void takeover_pack_free(struct vc_takeover_pack *p);
/* The connection is handed over: end the session, never unmount. */
void takeover_mark_given(struct vc_fs *fs);

/* --- the new daemon --- */

struct vc_takeover {
	int sock;		/* to the old daemon; -1 from the fd store */
	bool from_store;	/* passed by systemd's fd store (fdstore.h) */
	int devfd, rootfd;	/* owned until taken */
	int *fds;		/* the inodes' descriptors; owned until taken */
	unsigned nfds;
	struct vc_handover state;
};

/*
 * For main: find the vcachefs mount at mountpoint (its absolute path
 * into mnt), ask its daemon (control socket: control, or the default
 * one) and receive the connection; source gets the old daemon's source
 * directory. Returns 0, or -errno after logging why.
 */
int takeover_begin(const char *mountpoint, const char *control, char *mnt,
    size_t mntlen, char *source, size_t srclen, struct vc_takeover *tk);
/*
 * Ask the daemon at the control socket path for its connection and
 * receive it. Returns 0, or -errno after logging why.
 */
int takeover_request(const char *path, struct vc_takeover *tk);
/*
 * Rebuild fs (itable, registry initialised; se created) from tk, attach
 * the descriptor to se and replay INIT. Returns 0, or -errno with why.
 */
int takeover_install(struct vc_fs *fs, struct vc_takeover *tk, char *why,
    size_t whylen);
/* Tell the old daemon: ack, and wait for its "ok". Returns 0 or -errno. */
int takeover_commit(struct vc_takeover *tk);
/* Tell the old daemon why not (it goes on serving) and drop what came. */
void takeover_refuse(struct vc_takeover *tk, const char *why);
void takeover_init(struct vc_takeover *tk);
void takeover_free(struct vc_takeover *tk);
/* Read and check the state in memfd into tk->state. Returns 0 or -errno. */
int takeover_read_state(struct vc_takeover *tk, int memfd);

#endif
