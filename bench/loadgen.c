/*
 * loadgen: closed-loop TCP echo load generator for the gaio benchmarks.
 *
 * One thread, one epoll set, level-triggered, libc only.  Every connection
 * keeps `depth` messages of `size` bytes in flight; an echoed message is
 * counted once its last byte is back, and then the next one is queued.
 *
 * Every byte is verified.  Connection i sends the byte stream
 *     pattern[(seed_i + k) % P]   for stream offset k = 0, 1, 2, ...
 * where `pattern` is a fixed pseudo-random table of P (prime) bytes, stored
 * twice in a row so any window of up to P bytes is contiguous: sends are
 * issued straight from the table (no copy), and received data is checked with
 * one memcmp against the same window.
 *
 * Timeline: connect all, then start traffic, run `warmup` seconds, then count
 * completions for `duration` seconds.  A connection counts as connected only
 * once a 1-byte hello (stream offset 0) came back, i.e. the server accepted it
 * and serves it; at most 256 connections are in that state at a time.  So
 * the measured traffic never waits on the server's accept loop (a client-side
 * connect() completes as soon as the kernel queues the connection, long
 * before a busy server accepts it), and the listen backlog never overflows.
 * Messages start at stream offset 1.  With --server-pid, the server's utime+stime (from /proc/PID/stat,
 * summed over a comma-separated list of pids) is sampled at the edges of the
 * measured window, so CPU per message covers exactly the counted messages.
 *
 * --idle: connect all (the hello echo means the server accepted each
 * connection and re-armed its read), wait --settle seconds, report the
 * server's RSS growth per connection, and exit.  The connections come in two
 * halves, with a --settle pause and an RSS sample between them: growth over
 * the second half per connection is the marginal cost of one more idle
 * connection, without what the server sets up once (pools, arenas, tables
 * that grow in steps), which the first half also pays for.
 *
 * At exit sockets are closed with SO_LINGER{1,0} (RST), so repeated runs do
 * not pile up TIME_WAIT entries.
 *
 * Output: one JSON line on stdout.  Exit status 0 on a clean run, 1 if any
 * error or mismatch was seen, 2 on a setup failure (the JSON says why).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PATTERN_P 1048573u          /* prime, > RBUF_SIZE and > any single send */
#define RBUF_SIZE (256 * 1024)
#define MAX_EVENTS 1024
#define MAX_CONNECTING 256
/* latency histogram: 1 us buckets below 100 ms, 100 us buckets from 100 ms to 10 s, then overflow */
#define LAT_FINE 100000
#define LAT_COARSE 99000
#define LAT_BUCKETS (LAT_FINE + LAT_COARSE + 1)

enum { ST_CONNECTING, ST_HELLO, ST_OPEN, ST_DEAD };

struct conn {
    int fd;
    int state;
    int want_out;                   /* EPOLLOUT armed */
    uint32_t seed;
    uint64_t sent;                  /* bytes written */
    uint64_t allowed;               /* bytes we may have written (queued messages) */
    uint64_t recvd;                 /* bytes echoed back and verified */
    uint64_t msg_start_ns;          /* depth 1: when the message in flight was queued */
    uint64_t window_msgs;           /* messages completed in the measured window */
};

static struct {
    const char *host;
    int port, conns, size, depth, idle;
    double warmup, duration, settle;
    char *pids;
} opt = {"127.0.0.1", 0, 1, 128, 1, 0, 1.0, 3.0, 0.3, NULL};

static unsigned char *pattern;      /* 2 * PATTERN_P bytes */
static unsigned char rbuf[RBUF_SIZE];
static struct conn *cs;
static int epfd;
static uint64_t *lat_hist;
static uint64_t lat_count;
static int measuring;
static uint64_t msgs_window, msgs_total;
static uint64_t errors, mismatches, connect_errors;
static char first_error[160];
static volatile sig_atomic_t stop_flag;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void note_error(const char *what, int err) {
    if (!first_error[0])
        snprintf(first_error, sizeof first_error, "%s%s%s", what, err ? ": " : "", err ? strerror(err) : "");
}

static void fatal_json(const char *msg, int err) {
    printf("{\"fatal\": \"%s%s%s\"}\n", msg, err ? ": " : "", err ? strerror(err) : "");
    fflush(stdout);
    exit(2);
}

/* --- server accounting from /proc ------------------------------------------------ */

/* utime+stime in clock ticks, summed over opt.pids; -1 if unreadable. */
static long long server_cpu_ticks(void) {
    if (!opt.pids) return -1;
    long long total = 0;
    char *list = strdup(opt.pids), *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", tok);
        FILE *f = fopen(path, "r");
        if (!f) { total = -1; break; }
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')');       /* comm may contain spaces */
        if (!p) { total = -1; break; }
        unsigned long long ut = 0, st = 0;
        /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
            total = -1; break;
        }
        total += (long long)(ut + st);
    }
    free(list);
    return total;
}

/* resident set size in bytes, summed over opt.pids; -1 if unreadable. */
static long long server_rss_bytes(void) {
    if (!opt.pids) return -1;
    long long total = 0, page = sysconf(_SC_PAGESIZE);
    char *list = strdup(opt.pids), *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%s/statm", tok);
        FILE *f = fopen(path, "r");
        if (!f) { total = -1; break; }
        long long sz = 0, rss = 0;
        int ok = fscanf(f, "%lld %lld", &sz, &rss) == 2;
        fclose(f);
        if (!ok) { total = -1; break; }
        total += rss * page;
    }
    free(list);
    return total;
}

/* --settle: let the server finish what the last connections started */
static void settle(void) {
    struct timespec ts = {(time_t)opt.settle, (long)((opt.settle - (double)(time_t)opt.settle) * 1e9)};
    nanosleep(&ts, NULL);
}

/* --- connections ---------------------------------------------------------------- */

static void set_out(struct conn *c, int on) {
    if (c->want_out == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)(c - cs)};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

static void kill_conn(struct conn *c, const char *why, int err) {
    if (c->state == ST_DEAD) return;
    if (c->state == ST_OPEN) errors++; else connect_errors++;
    note_error(why, err);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = ST_DEAD;
}

/* Write as much of the queued stream as the socket takes. */
static void pump_send(struct conn *c) {
    while (c->sent < c->allowed) {
        uint64_t left = c->allowed - c->sent;
        size_t off = (size_t)((c->seed + c->sent) % PATTERN_P);
        size_t n = left < PATTERN_P ? (size_t)left : PATTERN_P;
        ssize_t w = send(c->fd, pattern + off, n, MSG_NOSIGNAL);
        if (w > 0) { c->sent += (uint64_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { set_out(c, 1); return; }
        kill_conn(c, "send", w < 0 ? errno : 0);
        return;
    }
    set_out(c, 0);
}

static void on_readable(struct conn *c, uint64_t t) {
    ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        kill_conn(c, "recv", errno);
        return;
    }
    if (r == 0) { kill_conn(c, "recv: server closed the connection", 0); return; }
    if (c->recvd + (uint64_t)r > c->sent) {
        mismatches++;
        kill_conn(c, "received more bytes than were sent", 0);
        return;
    }
    size_t off = (size_t)((c->seed + c->recvd) % PATTERN_P);
    if (memcmp(rbuf, pattern + off, (size_t)r) != 0) {
        mismatches++;
        kill_conn(c, "echoed bytes differ from the bytes sent", 0);
        return;
    }
    if (c->state == ST_HELLO) {          /* the 1-byte hello is all that was sent */
        c->recvd += (uint64_t)r;
        c->state = ST_OPEN;
        return;
    }
    uint64_t size = (uint64_t)opt.size;
    uint64_t done_before = (c->recvd - 1) / size;  /* messages start at offset 1 */
    c->recvd += (uint64_t)r;
    uint64_t done = (c->recvd - 1) / size - done_before;
    if (done == 0) return;
    msgs_total += done;
    if (measuring) {
        msgs_window += done;
        c->window_msgs += done;
        if (lat_hist) {
            uint64_t us = (t - c->msg_start_ns) / 1000, b;
            if (us < LAT_FINE) b = us;
            else if (us < LAT_FINE + 100ull * LAT_COARSE) b = LAT_FINE + (us - LAT_FINE) / 100;
            else b = LAT_BUCKETS - 1;
            lat_hist[b]++;
            lat_count++;
        }
    }
    c->msg_start_ns = t;
    c->allowed += done * size;
    pump_send(c);
}

static int start_connect(struct conn *c, struct sockaddr_in *sa) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = ST_CONNECTING;
    c->want_out = 1;
    if (connect(fd, (struct sockaddr *)sa, sizeof *sa) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)(c - cs)};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) { int e = errno; close(fd); return -e; }
    return 0;
}

static double percentile(double q) {
    if (!lat_count) return -1;
    uint64_t rank = (uint64_t)(q * (double)(lat_count - 1)), seen = 0;
    for (uint64_t i = 0; i < LAT_BUCKETS; i++) {
        seen += lat_hist[i];
        if (seen > rank)   /* bucket midpoint, us */
            return i < LAT_FINE ? (double)i + 0.5 : LAT_FINE + (double)(i - LAT_FINE) * 100 + 50;
    }
    return -1;
}

static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port P [--host 127.0.0.1] [--conns N] [--size BYTES] [--depth D]\n"
            "               [--warmup S] [--duration S] [--server-pid PID[,PID...]]\n"
            "               [--idle [--settle S]]\n");
    exit(2);
}

int main(int argc, char **argv) {
    static struct option longopts[] = {
        {"host", required_argument, 0, 'h'},     {"port", required_argument, 0, 'p'},
        {"conns", required_argument, 0, 'c'},    {"size", required_argument, 0, 's'},
        {"depth", required_argument, 0, 'd'},    {"warmup", required_argument, 0, 'w'},
        {"duration", required_argument, 0, 't'}, {"server-pid", required_argument, 0, 'P'},
        {"idle", no_argument, 0, 'i'},           {"settle", required_argument, 0, 'S'},
        {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'c': opt.conns = atoi(optarg); break;
        case 's': opt.size = atoi(optarg); break;
        case 'd': opt.depth = atoi(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 't': opt.duration = atof(optarg); break;
        case 'P': opt.pids = optarg; break;
        case 'i': opt.idle = 1; break;
        case 'S': opt.settle = atof(optarg); break;
        default: usage();
        }
    }
    if (opt.port <= 0 || opt.conns <= 0 || opt.size <= 0 || opt.depth <= 0 || opt.duration <= 0 ||
        opt.warmup < 0 || (uint64_t)opt.size * (uint64_t)opt.depth > (1u << 30))
        usage();
    if (opt.idle) { opt.size = 1; opt.depth = 1; }

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    /* enough descriptors for every connection, plus slack */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t need = (rlim_t)opt.conns + 64;
    if (rl.rlim_cur < need) {
        if (rl.rlim_max < need) rl.rlim_max = need;    /* works as root */
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) fatal_json("cannot raise RLIMIT_NOFILE", errno);
    }

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1) fatal_json("bad --host", 0);

    pattern = malloc(2 * (size_t)PATTERN_P);
    if (!pattern) fatal_json("out of memory", 0);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < PATTERN_P; i++) {     /* xorshift64* */
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
        pattern[i] = (unsigned char)((x * 0x2545F4914F6CDD1Dull) >> 56);
    }
    memcpy(pattern + PATTERN_P, pattern, PATTERN_P);

    cs = calloc((size_t)opt.conns, sizeof *cs);
    if (!cs) fatal_json("out of memory", 0);
    for (int i = 0; i < opt.conns; i++) { cs[i].fd = -1; cs[i].state = ST_DEAD; }
    if (opt.depth == 1 && !opt.idle) {
        lat_hist = calloc(LAT_BUCKETS, sizeof *lat_hist);
        if (!lat_hist) fatal_json("out of memory", 0);
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) fatal_json("epoll_create1", errno);

    long long rss_before = opt.idle ? server_rss_bytes() : -1;
    long long rss_half = -1;
    int open_half = 0;
    int limit = opt.idle ? opt.conns / 2 : opt.conns;  /* idle: the first half, then the rest */

    /* ---- phase 1: connect everything, each confirmed by its hello echo ---------- */
    struct epoll_event evs[MAX_EVENTS];
    int next = 0, in_progress = 0, open_conns = 0;
    uint64_t t_conn0 = now_ns(), connect_deadline = t_conn0 + 60ull * 1000000000ull;
    while ((next < opt.conns || in_progress > 0) && !stop_flag) {
        if (next == limit && in_progress == 0 && limit < opt.conns) {  /* idle: halfway */
            settle();
            rss_half = server_rss_bytes();
            open_half = open_conns;
            limit = opt.conns;
        }
        while (next < limit && in_progress < MAX_CONNECTING) {
            struct conn *c = &cs[next];
            c->seed = (uint32_t)(((uint64_t)next * 2654435761ull) % PATTERN_P);
            int e = start_connect(c, &sa);
            next++;
            if (e < 0) { c->state = ST_DEAD; c->fd = -1; connect_errors++; note_error("connect", -e); continue; }
            in_progress++;
        }
        if (now_ns() > connect_deadline) fatal_json("timed out connecting (no hello echo within 60 s)", 0);
        int n = epoll_wait(epfd, evs, MAX_EVENTS, 100);
        if (n < 0 && errno != EINTR) fatal_json("epoll_wait", errno);
        for (int i = 0; i < n; i++) {
            struct conn *c = &cs[evs[i].data.u32];
            int was = c->state;
            if (was != ST_CONNECTING && was != ST_HELLO) continue;
            if (c->state == ST_CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) { kill_conn(c, "connect", err); in_progress--; continue; }
                c->state = ST_HELLO;
                c->allowed = 1;
                pump_send(c);
            } else if (c->state == ST_HELLO) {
                if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c, 0);
                if (c->state == ST_HELLO && (evs[i].events & EPOLLOUT)) pump_send(c);
            }
            if (c->state == ST_OPEN) { in_progress--; open_conns++; }
            else if (c->state == ST_DEAD) in_progress--;
        }
    }
    double connect_s = (double)(now_ns() - t_conn0) / 1e9;
    if (open_conns == 0) fatal_json(first_error[0] ? first_error : "no connection succeeded", 0);

    /* ---- phase 2: traffic --------------------------------------------------------- */
    uint64_t t0 = now_ns();
    for (int i = 0; i < opt.conns && !opt.idle; i++) {
        struct conn *c = &cs[i];
        if (c->state != ST_OPEN) continue;
        c->allowed = 1 + (uint64_t)opt.size * (uint64_t)opt.depth;
        c->msg_start_ns = t0;
        pump_send(c);
    }
    uint64_t t_measure = t0 + (uint64_t)(opt.warmup * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(opt.duration * 1e9);
    if (opt.idle) t_end = t0;  /* no traffic: the hello echoes were all of it */
    long long ticks0 = -1, ticks1 = -1;
    uint64_t m0 = 0, m1 = 0;
    while (!stop_flag) {
        uint64_t t = now_ns();
        if (!measuring && t >= t_measure) {
            measuring = 1;
            m0 = t;
            ticks0 = server_cpu_ticks();
        }
        if (t >= t_end) break;
        uint64_t edge = measuring ? t_end : t_measure;
        int tmo = (int)((edge - t) / 1000000) + 1;
        if (tmo > 100) tmo = 100;
        int n = epoll_wait(epfd, evs, MAX_EVENTS, tmo);
        if (n < 0) { if (errno == EINTR) continue; fatal_json("epoll_wait", errno); }
        t = now_ns();
        for (int i = 0; i < n; i++) {
            struct conn *c = &cs[evs[i].data.u32];
            if (c->state != ST_OPEN) continue;
            uint32_t e = evs[i].events;
            if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c, t);
            if (c->state == ST_OPEN && (e & EPOLLOUT)) pump_send(c);
        }
    }
    m1 = now_ns();
    ticks1 = server_cpu_ticks();

    long long rss_after = -1;
    if (opt.idle) {
        settle();
        rss_after = server_rss_bytes();
    }

    /* ---- report -------------------------------------------------------------------- */
    double window = opt.idle ? 0 : (double)(m1 - m0) / 1e9;
    long hz = sysconf(_SC_CLK_TCK);
    printf("{\"conns\": %d, \"open\": %d, \"size\": %d, \"depth\": %d, \"connect_s\": %.3f",
           opt.conns, open_conns, opt.size, opt.depth, connect_s);
    if (opt.idle) {
        uint64_t idle_ok = (uint64_t)open_conns;
        printf(", \"mode\": \"idle\", \"idle_conns\": %llu", (unsigned long long)idle_ok);
        if (rss_before >= 0 && rss_after >= 0 && idle_ok > 0)
            printf(", \"rss_before\": %lld, \"rss_after\": %lld, \"rss_per_conn\": %.1f", rss_before,
                   rss_after, (double)(rss_after - rss_before) / (double)idle_ok);
        if (rss_half >= 0 && rss_after >= 0 && open_conns > open_half)
            printf(", \"rss_half\": %lld, \"rss_marginal_per_conn\": %.1f", rss_half,
                   (double)(rss_after - rss_half) / (double)(open_conns - open_half));
    } else {
        double rate = window > 0 ? (double)msgs_window / window : 0;
        printf(", \"window_s\": %.4f, \"msgs\": %llu, \"msgs_per_s\": %.1f, \"mb_per_s\": %.3f", window,
               (unsigned long long)msgs_window, rate, rate * opt.size / 1e6);
        if (lat_hist && lat_count) {
            printf(", \"p50_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.0f, \"lat_samples\": %llu",
                   percentile(0.50), percentile(0.99), percentile(1.0), (unsigned long long)lat_count);
            if (lat_hist[LAT_BUCKETS - 1])
                printf(", \"lat_over_10s\": %llu", (unsigned long long)lat_hist[LAT_BUCKETS - 1]);
        }
        /* fairness: per-connection completions in the window */
        uint64_t cmin = UINT64_MAX, cmax = 0, starved = 0;
        for (int i = 0; i < opt.conns; i++) {
            if (cs[i].state != ST_OPEN) continue;
            uint64_t m = cs[i].window_msgs;
            if (m < cmin) cmin = m;
            if (m > cmax) cmax = m;
            if (m == 0) starved++;
        }
        if (cmax > 0)
            printf(", \"conn_msgs_min\": %llu, \"conn_msgs_max\": %llu, \"starved_conns\": %llu",
                   (unsigned long long)cmin, (unsigned long long)cmax, (unsigned long long)starved);
        if (ticks0 >= 0 && ticks1 >= 0) {
            double cpu_us = (double)(ticks1 - ticks0) * 1e6 / (double)hz;
            printf(", \"server_cpu_us\": %.0f, \"server_cpu_util\": %.3f", cpu_us,
                   window > 0 ? cpu_us / 1e6 / window : 0);
            if (msgs_window) printf(", \"server_cpu_us_per_msg\": %.3f", cpu_us / (double)msgs_window);
        }
    }
    printf(", \"errors\": %llu, \"connect_errors\": %llu, \"mismatches\": %llu",
           (unsigned long long)errors, (unsigned long long)connect_errors, (unsigned long long)mismatches);
    if (first_error[0]) {
        printf(", \"first_error\": \"");
        for (const char *p = first_error; *p; p++) if (*p != '"' && *p != '\\') putchar(*p);
        putchar('"');
    }
    printf("}\n");
    fflush(stdout);

    struct linger lg = {1, 0};
    for (int i = 0; i < opt.conns; i++) {
        if (cs[i].fd >= 0 && cs[i].state != ST_DEAD) {
            setsockopt(cs[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(cs[i].fd);
        }
    }
    return (errors || mismatches || connect_errors) ? 1 : 0;
}
