"""cffi (API mode) builder for ``gaio._uring``: the io_uring engine's C side.

liburing is linked statically (``liburing.a``), so the built extension needs no
``liburing.so`` at run time. Only liburing 2.3 API is used. The hot path is two
calls: :c:func:`gaio_enter` returns used buffers, prepares N queued ops,
submits them, optionally waits, and copies completions out (or
:c:func:`gaio_enter1`, the same for up to three words of records passed as
arguments: one op); :c:func:`gaio_reap` copies more completions out without a
system call. Python thus crosses into C about once per batch.
cffi releases the GIL around every call; none of these functions touch Python
objects, only C memory (``ffi.new`` arrays, the buffer pool and the buffers of
queued ops) that the engine owns and no other thread touches meanwhile.

Run ``python build_uring.py`` to build in place (setup.py does it on install).
"""

import glob
import os

import cffi

# What gaio_enter works on, set up once per ring: the engine's own C arrays
# (SQE records in, buffer ids to return, CQEs out) and its buffer ring. Both
# the cdef and the C source declare it.
LOOP_STRUCT = """
struct gaio_loop {
    struct io_uring *ring;
    uint64_t *recs;
    uint16_t *bids;
    void *br;
    char *pool;
    int64_t *cq;
    unsigned entries, size, cap;
    unsigned wsize; /* the wide buffers' size (read-ahead), 0 without them */
};
"""

CDEF = r"""
struct io_uring { unsigned flags; int ring_fd; unsigned features; ...; };

#define IORING_SETUP_CQSIZE ...
#define IORING_SETUP_R_DISABLED ...
#define IORING_SETUP_SUBMIT_ALL ...
#define IORING_SETUP_COOP_TASKRUN ...
#define IORING_SETUP_SINGLE_ISSUER ...
#define IORING_SETUP_DEFER_TASKRUN ...
#define IORING_SETUP_TASKRUN_FLAG ...
#define IORING_FEAT_NODROP ...
#define IORING_FEAT_EXT_ARG ...
#define IORING_CQE_F_BUFFER ...
#define IORING_CQE_F_MORE ...
#define IORING_CQE_BUFFER_SHIFT ...

#define GAIO_RECV ...
#define GAIO_RECV_SELECT ...
#define GAIO_SEND ...
#define GAIO_CANCEL ...
#define GAIO_CANCEL_ALL ...
#define GAIO_POLL ...
#define GAIO_RECV_SELECT_NOW ...
#define GAIO_SEND_AT ...
#define GAIO_RECV_WIDE ...
#define GAIO_RECV_WIDE_NOW ...

int gaio_setup(struct io_uring *r, unsigned sq, unsigned cq, unsigned flags);
int io_uring_enable_rings(struct io_uring *r);
void io_uring_queue_exit(struct io_uring *r);
int io_uring_register_files(struct io_uring *r, const int *files, unsigned n);
void gaio_close_ring_fd(struct io_uring *r);
int gaio_overflow(struct io_uring *r);
int gaio_iowq_aff(struct io_uring *r, int cpu);

int gaio_bufring_register(struct io_uring *r, void *br, unsigned entries, int bgid);
void gaio_bufring_add(void *br, unsigned entries, int reset, char *pool, unsigned size,
                      const uint16_t *bids, unsigned n);

""" + LOOP_STRUCT + r"""long long gaio_enter(struct gaio_loop *l, unsigned n, unsigned nb, void **mem, long long wait_ns);
long long gaio_enter1(struct gaio_loop *l, unsigned n, uint64_t w0, uint64_t w1, uint64_t w2,
                      void *mem, unsigned nb, long long wait_ns);
unsigned gaio_reap(struct io_uring *r, unsigned cap, int64_t *cq);
"""

SOURCE = r"""
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <liburing.h>

#define GAIO_RECV 0          /* recv into caller memory (arg = address)      */
#define GAIO_RECV_SELECT 1   /* recv into a provided buffer of group arg      */
#define GAIO_SEND 2          /* send from caller memory, MSG_NOSIGNAL         */
#define GAIO_CANCEL 3        /* async cancel of user_data arg                 */
#define GAIO_CANCEL_ALL 4    /* async cancel of everything (CANCEL_ANY)       */
#define GAIO_POLL 5          /* multishot POLLIN on fd (the wake-up eventfd)  */
#define GAIO_RECV_SELECT_NOW 6 /* GAIO_RECV_SELECT, trying the recv at once      */
#define GAIO_SEND_AT 7       /* GAIO_SEND from an address (a bytes' data)      */
#define GAIO_RECV_WIDE 8     /* GAIO_RECV_SELECT on the wide buffers (group 1) */
#define GAIO_RECV_WIDE_NOW 9 /* GAIO_RECV_WIDE, trying the recv at once        */
#define GAIO_RAW (1ULL << 62) /* marks a CQE's user_data copied out whole     */
""" + LOOP_STRUCT + r"""
int gaio_setup(struct io_uring *r, unsigned sq, unsigned cq, unsigned flags)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = flags | IORING_SETUP_CQSIZE;
    p.cq_entries = cq;
    return io_uring_queue_init_params(sq, r, &p);
}

/* Close the ring descriptor but keep the rings mapped: the kernel then cancels
   everything in flight and posts the CQEs into pages we can still read. */
void gaio_close_ring_fd(struct io_uring *r)
{
    if (r->ring_fd >= 0)
        close(r->ring_fd);
    r->ring_fd = -1;
    r->enter_ring_fd = -1;
}

int gaio_overflow(struct io_uring *r)
{
    return io_uring_cq_has_overflow(r);
}

int gaio_iowq_aff(struct io_uring *r, int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return io_uring_register_iowq_aff(r, sizeof set, &set);
}

int gaio_bufring_register(struct io_uring *r, void *br, unsigned entries, int bgid)
{
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long) (uintptr_t) br;
    reg.ring_entries = entries;
    reg.bgid = bgid;
    return io_uring_register_buf_ring(r, &reg, 0);
}

/* Hand buffers bids[0..n) (each `size` bytes of `pool`) back to the kernel. */
void gaio_bufring_add(void *br, unsigned entries, int reset, char *pool, unsigned size,
                      const uint16_t *bids, unsigned n)
{
    struct io_uring_buf_ring *b = br;
    int mask = io_uring_buf_ring_mask(entries);
    unsigned i;
    if (reset)
        io_uring_buf_ring_init(b);
    for (i = 0; i < n; i++)
        io_uring_buf_ring_add(b, pool + (size_t) bids[i] * size, size, bids[i], mask, i);
    io_uring_buf_ring_advance(b, n);
}

/* The words of a record of this kind (see gaio_enter). */
static unsigned gaio_words(unsigned kind)
{
    switch (kind) {
    case GAIO_RECV_SELECT:
    case GAIO_RECV_SELECT_NOW:
    case GAIO_RECV_WIDE:
    case GAIO_RECV_WIDE_NOW:
        return 1;
    case GAIO_POLL:
    case GAIO_CANCEL_ALL:
        return 2;
    default: /* GAIO_RECV, GAIO_SEND, GAIO_SEND_AT, GAIO_CANCEL */
        return 3;
    }
}

static void gaio_prep(struct gaio_loop *l, struct io_uring_sqe *sqe, const uint64_t *rec, void **mem)
{
    unsigned kind = (unsigned) (rec[0] & 15);
    int fd = (int) (uint32_t) (rec[0] >> 4);
    uint64_t ud = (uint64_t) kind << 32 | (uint32_t) fd;
    switch (kind) {
    case GAIO_RECV:
        io_uring_prep_recv(sqe, fd, mem[rec[1]], (uint32_t) rec[2], 0);
        break;
    case GAIO_RECV_SELECT:
    case GAIO_RECV_SELECT_NOW:
    case GAIO_RECV_WIDE:
    case GAIO_RECV_WIDE_NOW: {
        int wide = kind == GAIO_RECV_WIDE || kind == GAIO_RECV_WIDE_NOW;
        io_uring_prep_recv(sqe, fd, NULL, wide ? l->wsize : l->size, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = wide ? 1 : 0; /* _BGID_WIDE, _BGID in uring.py */
        /* wait for data before picking a buffer: an idle socket's recv then
           needs none, and -ENOBUFS only ever comes with data waiting. A read
           let out of the fairness queue (_NOW) has usually got its data by
           then: it tries at once, and on EAGAIN arms its poll, the buffer it
           picked left in the ring */
        if (kind == GAIO_RECV_SELECT || kind == GAIO_RECV_WIDE)
            sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
        ud = (uint64_t) GAIO_RECV_SELECT << 32 | (uint32_t) fd; /* one user_data for all four */
        break;
    }
    case GAIO_SEND:
        io_uring_prep_send(sqe, fd, mem[rec[1]], (uint32_t) rec[2], MSG_NOSIGNAL);
        break;
    case GAIO_SEND_AT:
        io_uring_prep_send(sqe, fd, (const void *) (uintptr_t) rec[1], (uint32_t) rec[2], MSG_NOSIGNAL);
        ud = (uint64_t) GAIO_SEND << 32 | (uint32_t) fd;
        break;
    case GAIO_CANCEL:
        io_uring_prep_cancel64(sqe, rec[2], 0);
        if (l->ring->features & IORING_FEAT_CQE_SKIP)
            sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        ud = rec[1];
        break;
    case GAIO_CANCEL_ALL:
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
        ud = rec[1];
        break;
    default: /* GAIO_POLL */
        io_uring_prep_poll_multishot(sqe, fd, POLLIN);
        ud = rec[1];
        break;
    }
    io_uring_sqe_set_data64(sqe, ud);
}

/* Copy out up to cap CQEs, two words each (one array that Python unpacks in
   one call), kept under 2**30 when they can be: Python makes an int object of
   each, and a bigger one costs it about twice as much to make and to read.
     first: kind << 28 | fd, for an op's user_data kind << 32 | fd with
       fd < 2**28; any other user_data (gaio's own, a higher fd) as it is,
       plus GAIO_RAW (2**62), so that word >= 2**30;
     second: res * 2**19 + bid * 2**4 + (flags & 15): the provided buffer's
       id (flags >> 16; under 2**15, the most buffers a group has here) and
       the low flags (F_BUFFER, F_MORE, ...); res = word >> 19 in Python. */
unsigned gaio_reap(struct io_uring *r, unsigned cap, int64_t *cq)
{
    unsigned head, n = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(r, head, cqe) {
        uint64_t ud = cqe->user_data;
        if (n == cap)
            break;
        if (ud >> 32 <= 3 && (uint32_t) ud < (1u << 28))
            cq[2 * n] = (int64_t) ((ud >> 32) << 28 | (uint32_t) ud);
        else
            cq[2 * n] = (int64_t) (ud | GAIO_RAW);
        cq[2 * n + 1] = (int64_t) cqe->res * 524288LL
                        + (int64_t) ((cqe->flags >> 16 & 0x7FFF) << 4 | (cqe->flags & 15));
        n++;
    }
    if (n)
        io_uring_cq_advance(r, n);
    return n;
}

/* Copy out up to cap CQEs, and while there is room and the kernel flags
   pending task work, ask it to run more. Under DEFER_TASKRUN one enter runs
   only a few task-work items (about 20 since Linux 6.13: the completions of
   receives that waited for data); the rest would wait for later enters,
   oldest first, and under load a receive could wait seconds. Bounded: each
   round either finds CQEs or stops. */
static unsigned gaio_drain(struct io_uring *r, unsigned cap, int64_t *cq)
{
    unsigned got = gaio_reap(r, cap, cq);
    while (got < cap && (IO_URING_READ_ONCE(*r->sq.kflags) & IORING_SQ_TASKRUN)) {
        unsigned more;
        if (io_uring_get_events(r) < 0)
            break;
        more = gaio_reap(r, cap - got, cq + 2 * (size_t) got);
        if (!more)
            break;
        got += more;
    }
    return got;
}

/* One call per round trip to the kernel. l->recs holds n words of records,
   each opening with the word fd << 4 | kind (under 2**30 while fd < 2**26:
   an int object Python makes at half the cost of a bigger one), and as long
   as its kind needs (gaio_words): every word Python converts costs it about
   150 instructions.
     swap recvs (RECV_SELECT, _NOW, RECV_WIDE, _NOW): that word alone; their
       user_data is RECV_SELECT << 32 | fd, their group and length the loop's;
     RECV, SEND: then an index into mem (their memory: the caller passes its
       buffers' cdata as one array per call, not an address per op), and the
       length; the user_data is kind << 32 | fd;
     SEND_AT: then the address (a bytes object's data, which Python knows
       without cffi) and the length; the user_data is SEND << 32 | fd;
     CANCEL: then the user_data and the target's;
     POLL, CANCEL_ALL: then the user_data.
   l->bids holds nb provided-buffer ids the user is done with.
   Hand those buffers back, prepare the records, submit them (in chunks when
   the SQ fills), then wait up to wait_ns (<0: forever, 0: not at all) for one
   completion, and copy up to l->cap CQEs to l->cq (see gaio_reap).
   Returns one integer, so that Python reads no struct fields: the CQEs
   copied (bits 0-23), the words of the records taken (bits 24-55), bit 56
   set when the caller should enter again at once: submission or waiting
   stopped on EBUSY, EAGAIN or EBADR (reap, then submit the rest), or
   completions wait in the kernel's overflow list; and bit 57 set on EEXIST:
   the ring is bound to another thread (SINGLE_ISSUER), so this call
   submitted nothing (it then reports no op taken) and waited for nothing. */
long long gaio_enter(struct gaio_loop *l, unsigned n, unsigned nb, void **mem, long long wait_ns)
{
    struct io_uring *r = l->ring;
    unsigned i = 0, got, words;
    int ret = 0, again;
    if (nb)
        gaio_bufring_add(l->br, l->entries, 0, l->pool, l->size, l->bids, nb);
    while (i < n) {
        struct io_uring_sqe *sqe;
        words = gaio_words((unsigned) (l->recs[i] & 15));
        if (words > n - i)
            break; /* a cut record (never made by Python): prepare nothing of it */
        sqe = io_uring_get_sqe(r);
        if (!sqe) {
            ret = io_uring_submit(r);
            if (ret <= 0)
                break;       /* nothing consumed: let the caller reap first */
            ret = 0;
            continue;
        }
        gaio_prep(l, sqe, l->recs + i, mem);
        i += words;
    }
    if (ret >= 0) {
        if (wait_ns == 0 || io_uring_cq_ready(r) || io_uring_cq_has_overflow(r)) {
            ret = io_uring_submit_and_get_events(r);
        } else if (wait_ns < 0) {
            ret = io_uring_submit_and_wait(r, 1);
        } else {
            struct __kernel_timespec ts;
            struct io_uring_cqe *cqe;
            ts.tv_sec = wait_ns / 1000000000LL;
            ts.tv_nsec = wait_ns % 1000000000LL;
            ret = io_uring_submit_and_wait_timeout(r, &cqe, 1, &ts, NULL);
        }
    }
    again = ret == -EBUSY || ret == -EAGAIN || ret == -EBADR;
    got = gaio_drain(r, l->cap, l->cq);
    again = again || io_uring_cq_has_overflow(r);
    if (ret == -EEXIST)
        i = 0; /* prepared in a ring that is not ours to submit to: still queued */
    return (long long) got | (long long) i << 24 | (long long) again << 56
           | (long long) (ret == -EEXIST) << 57;
}

/* gaio_enter for n <= 3 words of records, passed as arguments, and at most
   one op's memory (or NULL) as the only entry of mem: a round trip with one
   op in flight, the common case at low load, skips building the records
   array and the mem array in Python (about 300 ns a call). */
long long gaio_enter1(struct gaio_loop *l, unsigned n, uint64_t w0, uint64_t w1, uint64_t w2,
                      void *mem, unsigned nb, long long wait_ns)
{
    l->recs[0] = w0;
    l->recs[1] = w1;
    l->recs[2] = w2;
    return gaio_enter(l, n > 3 ? 3 : n, nb, &mem, wait_ns);
}
"""


def find_liburing():
    """(include_dir, path to liburing.a) or None when headers or the static lib are missing."""
    include = None
    for d in ("/usr/include", "/usr/local/include", "/opt/homebrew/include"):
        if os.path.exists(os.path.join(d, "liburing.h")):
            include = d
            break
    libdirs = ["/usr/lib64", "/usr/lib", "/usr/local/lib", "/usr/local/lib64", "/lib64", "/lib"]
    libdirs[:0] = sorted(glob.glob("/usr/lib/*-linux-gnu")) + sorted(glob.glob("/lib/*-linux-gnu"))
    for d in libdirs:
        a = os.path.join(d, "liburing.a")
        if include and os.path.exists(a):
            return include, a
    return None


ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
_found = find_liburing()
ffibuilder.set_source(
    "gaio._uring",
    SOURCE,
    include_dirs=[_found[0]] if _found else [],
    extra_objects=[_found[1]] if _found else [],
    extra_compile_args=["-O2"],
)

if __name__ == "__main__":
    if not _found:
        raise SystemExit("liburing headers or liburing.a not found")
    here = os.path.dirname(os.path.abspath(__file__))
    ffibuilder.compile(tmpdir=os.path.join(here, "build", "cffi"), target=None, verbose=False)
    # compile() writes gaio/_uring*.so relative to tmpdir; move it into the package
    for so in glob.glob(os.path.join(here, "build", "cffi", "gaio", "_uring*.so")):
        os.replace(so, os.path.join(here, "gaio", os.path.basename(so)))
        print("built", os.path.join("gaio", os.path.basename(so)))
