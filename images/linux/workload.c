// The Linux guest's workload: dirties a region of its own memory at a given rate, page by page,
// and on request checks that every page still holds exactly what it last wrote there. Run
// across a live migration, a page the migration lost, tore or delivered stale fails the check.
//
// Every page is a function of (page index, generation): word i = mix(page, gen, i). gen[] counts
// the writes of each page and sums[] keeps each page's checksum at its last write, so a stale
// page, a stale gen[] entry and a corrupted word each show up, and the three disagree in
// different ways (the verdict line says which).
//
// Parameters come as words "workload.NAME=VALUE", from argv or else from /proc/cmdline:
//   workload.mib=N     size of the region (MiB, default 64)
//   workload.rate=R    MiB dirtied per second; 0 = as fast as the CPU goes (default 16)
//   workload.ctl=PATH  command port (default /dev/ttyS1; "-" = stdin, for a run on the host)
// Commands, one per line on the command port: "verify ID", "status", "corrupt PAGE" (flip one
// bit, to prove the check can fail), "pause", "resume". Every line out starts with "workload: "
// and goes to stdout (the serial console in the guest); answers go to the command port too.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SIZE 4096u
#define WORDS_PER_PAGE (PAGE_SIZE / sizeof(uint64_t))
#define TICK_MS 10
#define PROGRESS_MS 1000

struct config {
    uint64_t mib;
    uint64_t rate_mib;
    const char *ctl;
};

struct region {
    uint64_t pages;
    uint64_t *mem;
    uint32_t *gen;
    uint64_t *sums;
    uint64_t cursor;
    uint64_t writes;
    uint64_t passes;
};

static int ctl_out = -1;

/* One line to the console and, when it is an answer, to the command port as well. */
static void say(int answer, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    char out[sizeof line + 16];
    int m = snprintf(out, sizeof out, "workload: %.*s", n, line);
    if (write(STDOUT_FILENO, out, (size_t)m) < 0) { /* console gone: nothing to tell */ }
    if (answer && ctl_out >= 0 && ctl_out != STDOUT_FILENO) {
        if (write(ctl_out, out, (size_t)m) < 0) { /* no one listening on the port */ }
    }
}

/* splitmix64's finaliser: every input bit moves about half the output bits. */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t pattern_word(uint64_t page, uint32_t gen, uint64_t i) {
    return mix64((page << 32) ^ ((uint64_t)gen << 12) ^ i ^ 0x6d696774776f726bull);
}

static uint64_t page_sum(const uint64_t *words) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < WORDS_PER_PAGE; i++) h = mix64(h ^ words[i]);
    return h;
}

static void write_page(struct region *r, uint64_t page) {
    uint32_t gen = r->gen[page] + 1;
    uint64_t *words = r->mem + page * WORDS_PER_PAGE;
    for (uint64_t i = 0; i < WORDS_PER_PAGE; i++) words[i] = pattern_word(page, gen, i);
    r->sums[page] = page_sum(words);
    r->gen[page] = gen;
    r->writes++;
}

static void dirty(struct region *r, uint64_t count) {
    while (count--) {
        write_page(r, r->cursor);
        if (++r->cursor == r->pages) {
            r->cursor = 0;
            r->passes++;
        }
    }
}

struct verdict {
    uint64_t bad_content; /* words differ from pattern(page, gen[page]) */
    uint64_t bad_sum;     /* checksum differs from sums[page] */
    uint64_t first_bad;   /* first page with any fault, or UINT64_MAX */
    uint64_t gen_total;   /* sum of gen[]: must equal writes */
};

static struct verdict verify(const struct region *r) {
    struct verdict v = {0, 0, UINT64_MAX, 0};
    for (uint64_t p = 0; p < r->pages; p++) {
        const uint64_t *words = r->mem + p * WORDS_PER_PAGE;
        uint32_t gen = r->gen[p];
        v.gen_total += gen;
        int bad = 0;
        for (uint64_t i = 0; i < WORDS_PER_PAGE; i++) {
            if (words[i] != pattern_word(p, gen, i)) {
                v.bad_content++;
                bad = 1;
                break;
            }
        }
        if (page_sum(words) != r->sums[p]) {
            v.bad_sum++;
            bad = 1;
        }
        if (bad && v.first_bad == UINT64_MAX) v.first_bad = p;
    }
    return v;
}

static void report_verdict(const struct region *r, const char *id) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct verdict v = verify(r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    int ok = v.bad_content == 0 && v.bad_sum == 0 && v.gen_total == r->writes;
    if (ok) {
        say(1, "verify %s pass pages=%llu writes=%llu passes=%llu ms=%ld", id,
            (unsigned long long)r->pages, (unsigned long long)r->writes,
            (unsigned long long)r->passes, ms);
    } else {
        say(1,
            "verify %s fail pages=%llu bad-content=%llu bad-sum=%llu first-bad=%lld "
            "gen-total=%llu writes=%llu ms=%ld",
            id, (unsigned long long)r->pages, (unsigned long long)v.bad_content,
            (unsigned long long)v.bad_sum,
            v.first_bad == UINT64_MAX ? -1ll : (long long)v.first_bad,
            (unsigned long long)v.gen_total, (unsigned long long)r->writes, ms);
    }
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

/* Takes "workload.NAME=VALUE" words; ignores every other word (the rest of a kernel command line). */
static int parse_word(struct config *c, const char *w) {
    if (strncmp(w, "workload.", 9) != 0) return 0;
    w += 9;
    if (!strncmp(w, "mib=", 4)) return parse_u64(w + 4, &c->mib);
    if (!strncmp(w, "rate=", 5)) return parse_u64(w + 5, &c->rate_mib);
    if (!strncmp(w, "ctl=", 4)) {
        c->ctl = w + 4;
        return 0;
    }
    return -1;
}

static int config_from_cmdline(struct config *c) {
    static char buf[4096];
    int fd = open("/proc/cmdline", O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    for (char *save = NULL, *w = strtok_r(buf, " \n", &save); w; w = strtok_r(NULL, " \n", &save)) {
        if (parse_word(c, w) < 0) {
            say(0, "bad parameter '%s'", w);
            return -1;
        }
    }
    return 0;
}

static int open_ctl(const char *path) {
    if (!strcmp(path, "-")) {
        ctl_out = STDOUT_FILENO;
        return STDIN_FILENO;
    }
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return -1;
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(fd, TCSANOW, &t);
    }
    ctl_out = fd;
    return fd;
}

static uint64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void run_command(struct region *r, char *line, int *paused) {
    char *arg = strchr(line, ' ');
    if (arg) *arg++ = 0;
    if (!strcmp(line, "verify")) {
        report_verdict(r, arg && *arg ? arg : "-");
    } else if (!strcmp(line, "status")) {
        say(1, "status writes=%llu passes=%llu paused=%d", (unsigned long long)r->writes,
            (unsigned long long)r->passes, *paused);
    } else if (!strcmp(line, "corrupt") && arg) {
        uint64_t page;
        if (parse_u64(arg, &page) < 0 || page >= r->pages) {
            say(1, "error corrupt: no page '%s'", arg);
            return;
        }
        r->mem[page * WORDS_PER_PAGE + 7] ^= 1ull << 17;
        say(1, "corrupted page=%llu", (unsigned long long)page);
    } else if (!strcmp(line, "pause")) {
        *paused = 1;
        say(1, "paused writes=%llu", (unsigned long long)r->writes);
    } else if (!strcmp(line, "resume")) {
        *paused = 0;
        say(1, "resumed writes=%llu", (unsigned long long)r->writes);
    } else if (*line) {
        say(1, "error unknown command '%s'", line);
    }
}

int main(int argc, char **argv) {
    struct config c = {64, 16, "/dev/ttyS1"};
    int from_argv = 0;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "workload.", 9)) from_argv = 1;
        if (parse_word(&c, argv[i]) < 0) {
            say(0, "bad parameter '%s'", argv[i]);
            return 2;
        }
    }
    if (!from_argv && config_from_cmdline(&c) < 0) return 2;
    if (c.mib == 0 || c.mib > (1u << 20)) {
        say(0, "bad parameter workload.mib=%llu", (unsigned long long)c.mib);
        return 2;
    }

    struct region r = {0};
    r.pages = c.mib * (1024 * 1024 / PAGE_SIZE);
    r.mem = mmap(NULL, r.pages * PAGE_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    r.gen = calloc(r.pages, sizeof *r.gen);
    r.sums = calloc(r.pages, sizeof *r.sums);
    if (r.mem == MAP_FAILED || !r.gen || !r.sums) {
        say(0, "cannot allocate %llu MiB", (unsigned long long)c.mib);
        return 1;
    }
    // No swap in the guest, but a locked region also rules out the kernel moving pages about.
    mlock(r.mem, r.pages * PAGE_SIZE);
    dirty(&r, r.pages); // every page holds a pattern before anyone asks

    int ctl = open_ctl(c.ctl);
    if (ctl < 0) {
        say(0, "cannot open command port %s: %s", c.ctl, strerror(errno));
        return 1;
    }
    say(1, "ready mib=%llu rate=%llu pages=%llu ctl=%s", (unsigned long long)c.mib,
        (unsigned long long)c.rate_mib, (unsigned long long)r.pages, c.ctl);

    // Pages due per tick, as a fraction carried over so low rates still move.
    const uint64_t pages_per_sec = c.rate_mib * (1024 * 1024 / PAGE_SIZE);
    uint64_t start = now_ms(), last_progress = start, due_done = 0;
    int paused = 0;
    char cmd[256];
    size_t cmd_len = 0;
    for (;;) {
        uint64_t t = now_ms();
        if (!paused) {
            if (pages_per_sec == 0) {
                dirty(&r, 256);
            } else {
                uint64_t due = (t - start) * pages_per_sec / 1000;
                // After a long stop (a migration's downtime) start afresh rather than catch up.
                if (due - due_done > pages_per_sec) due_done = due - pages_per_sec / 10;
                dirty(&r, due - due_done);
                due_done = due;
            }
        } else {
            start = t;
            due_done = 0;
        }
        if (t - last_progress >= PROGRESS_MS) {
            last_progress = t;
            say(0, "progress writes=%llu passes=%llu", (unsigned long long)r.writes,
                (unsigned long long)r.passes);
        }
        struct pollfd pfd = {.fd = ctl, .events = POLLIN};
        int wait = (pages_per_sec == 0 && !paused) ? 0 : TICK_MS;
        if (poll(&pfd, 1, wait) <= 0) continue;
        if (pfd.revents & (POLLHUP | POLLERR) && !(pfd.revents & POLLIN)) {
            if (ctl == STDIN_FILENO) return 0; // host run: input closed
            continue;
        }
        char buf[128];
        ssize_t n = read(ctl, buf, sizeof buf);
        if (n == 0 && ctl == STDIN_FILENO) return 0;
        for (ssize_t i = 0; i < n; i++) {
            char ch = buf[i];
            if (ch == '\r' || ch == '\n') {
                cmd[cmd_len] = 0;
                run_command(&r, cmd, &paused);
                cmd_len = 0;
            } else if (cmd_len < sizeof cmd - 1) {
                cmd[cmd_len++] = ch;
            }
        }
    }
}
