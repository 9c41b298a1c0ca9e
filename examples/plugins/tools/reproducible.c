/*
 * reproducible.so: an LD_PRELOAD shim that makes componentize-py's and componentize-js's output
 * byte-reproducible (Linux x86_64 only). Used only at build time, by ../build-py.sh (preloaded
 * into componentize-py) and ../build-js.mjs (preloaded into the Wizer that componentize-js runs);
 * never part of a plugin.
 *
 * Why: both tools pre-initialise a language runtime (CPython; the StarlingMonkey JS engine)
 * inside wasmtime and snapshot its whole linear memory into the component. Everything the runtime
 * observed while loading the plugin ends up in that snapshot, including freed-but-not-cleared
 * heap bytes. Both give the guest real host entropy, real clocks and real file metadata, and
 * neither has a flag to stop it (componentize-py issue #247, ComponentizeJS issue #321), so two
 * builds of the same source differ (by megabytes for Python, by hundreds of bytes for JS).
 * This shim makes what the guest can observe a pure function of the inputs:
 *
 *   - getrandom/getentropy/syscall(SYS_getrandom): a fixed byte stream. This seeds the guest's
 *     hash randomisation and `random` module, and the host's hash maps and temp-file names.
 *   - clock_gettime: frozen at SOURCE_EPOCH (wall and monotonic alike).
 *   - stat/lstat/fstat/newfstatat/statx of anything under $REPRO_ROOT (the build's staging
 *     directory, which holds every directory the guest can see): wasmtime-wasi reaches these
 *     through rustix's raw syscalls, which LD_PRELOAD cannot see, so a seccomp filter traps
 *     them to a SIGSYS handler that performs the call and then sets every timestamp to
 *     SOURCE_EPOCH, the device to 1, the inode to a hash of the file name, and directory sizes
 *     to 0. Files outside $REPRO_ROOT keep their real metadata: the dynamic loader, for one,
 *     tells libraries apart by device and inode.
 *   - getdents64 (also trapped) under $REPRO_ROOT: each directory is returned sorted by name,
 *     so the listing order does not depend on the filesystem or its hash seed.
 *
 * The handler's own syscalls pass the filter by carrying MAGIC in the unused sixth argument.
 * The filter is inherited by any program the process execs, which would die on its first stat
 * (before this shim could install a handler), so only preload it into a process that does not
 * exec: componentize-py with VIRTUAL_ENV set starts no subprocess, nor does Wizer.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#if !defined(__x86_64__)
#error "reproducible.c supports Linux x86_64 only"
#endif

#define SOURCE_EPOCH 946684800L /* 2000-01-01T00:00:00Z */
#define MAGIC 0x52505244L       /* "RPRD": marks the handler's own syscalls */

/* ---- entropy and clocks (plain symbol interposition) ---------------------------------- */

static void fill(void *buf, size_t len) {
    /* splitmix64 from a fixed seed, restarted on every call: the bytes a caller gets never
       depend on how many other threads asked before it. */
    uint64_t x = 0x0123456789abcdefULL;
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i += 8) {
        x += 0x9E3779B97F4A7C15ULL;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        memcpy(p + i, &z, len - i < 8 ? len - i : 8);
    }
}

ssize_t getrandom(void *buf, size_t len, unsigned int flags) {
    (void)flags;
    fill(buf, len);
    return (ssize_t)len;
}

int getentropy(void *buf, size_t len) {
    fill(buf, len);
    return 0;
}

long syscall(long n, ...) {
    va_list ap;
    long a[6];
    va_start(ap, n);
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (n == SYS_getrandom) {
        fill((void *)a[0], (size_t)a[1]);
        return a[1];
    }
    static long (*real)(long, ...);
    if (!real) real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return real(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}

int clock_gettime(clockid_t clk, struct timespec *ts) {
    (void)clk;
    ts->tv_sec = SOURCE_EPOCH;
    ts->tv_nsec = 0;
    return 0;
}

/* ---- raw syscalls that pass the filter ------------------------------------------------- */

static long raw6(long n, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

/* A trapped syscall (stat family, getdents64) made by the handler itself: MAGIC lets it pass. */
static long raw(long n, long a, long b, long c, long d, long e) { return raw6(n, a, b, c, d, e, MAGIC); }

/* ---- is a path under $REPRO_ROOT? ----------------------------------------------------- */

#define PATH_MAX_LEN 4096
static char root[PATH_MAX_LEN];
static size_t root_len;

static size_t str_len(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

/* The path behind fd (or the cwd for AT_FDCWD) into buf; its length, or 0 if unknown. */
static size_t fd_path(int fd, char *buf, size_t cap) {
    long n;
    if (fd == AT_FDCWD) {
        n = raw6(SYS_getcwd, (long)buf, (long)cap, 0, 0, 0, 0);
        return n > 0 ? str_len(buf) : 0;
    }
    char link[32] = "/proc/self/fd/";
    char digits[12];
    int d = 0;
    unsigned v = (unsigned)fd;
    do digits[d++] = (char)('0' + v % 10); while ((v /= 10) && d < 11);
    size_t k = str_len(link);
    while (d) link[k++] = digits[--d];
    link[k] = 0;
    n = raw6(SYS_readlink, (long)link, (long)buf, (long)cap - 1, 0, 0, 0);
    if (n <= 0) return 0;
    buf[n] = 0;
    return (size_t)n;
}

/* Whether dirfd + path (as the *at syscalls take them) lies under root. */
static int under_root(int dirfd, const char *path) {
    if (!root_len) return 0;
    char full[2 * PATH_MAX_LEN];
    size_t n = 0;
    if (!path || path[0] != '/') {
        n = fd_path(dirfd, full, PATH_MAX_LEN);
        if (!n) return 0;
    }
    if (path && path[0]) {
        size_t p = str_len(path);
        if (p >= PATH_MAX_LEN) return 0;
        if (n) full[n++] = '/';
        memcpy(full + n, path, p);
        n += p;
    }
    full[n] = 0;
    return n >= root_len && memcmp(full, root, root_len) == 0 &&
           (full[root_len] == '/' || full[root_len] == 0);
}

/* FNV-1a of the last component of dirfd + path: a stable, non-zero stand-in inode. */
static uint64_t name_inode(int dirfd, const char *path) {
    char buf[PATH_MAX_LEN];
    const char *name = path;
    if (!path || !path[0]) {
        if (!fd_path(dirfd, buf, sizeof buf)) return 1;
        name = buf;
    }
    const char *last = name;
    for (const char *c = name; *c; c++)
        if (*c == '/' && c[1]) last = c + 1;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *c = last; *c && *c != '/'; c++) h = (h ^ (unsigned char)*c) * 0x100000001b3ULL;
    return h ? h : 1;
}

/* ---- stat normalisation ---------------------------------------------------------------- */

static void fix_stat(struct stat *st, uint64_t ino) {
    st->st_dev = 1;
    st->st_ino = ino;
    st->st_atim.tv_sec = st->st_mtim.tv_sec = st->st_ctim.tv_sec = SOURCE_EPOCH;
    st->st_atim.tv_nsec = st->st_mtim.tv_nsec = st->st_ctim.tv_nsec = 0;
    if (S_ISDIR(st->st_mode)) st->st_size = 0;
}

static void fix_ts(struct statx_timestamp *t) {
    t->tv_sec = SOURCE_EPOCH;
    t->tv_nsec = 0;
}

static void fix_statx(struct statx *sx, uint64_t ino) {
    sx->stx_dev_major = 0;
    sx->stx_dev_minor = 1;
    sx->stx_ino = ino;
    fix_ts(&sx->stx_atime);
    fix_ts(&sx->stx_btime);
    fix_ts(&sx->stx_ctime);
    fix_ts(&sx->stx_mtime);
    if (S_ISDIR(sx->stx_mode)) sx->stx_size = 0;
}

/* ---- sorted directory listings --------------------------------------------------------- */

struct dirent64_raw {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* One directory being listed: every entry read up front, sorted, then handed out in order. */
struct listing {
    int fd;            /* -1 when the slot is free */
    char *buf;         /* mmap'd: the raw records, then the sorted index */
    size_t buf_len;    /* bytes mapped */
    struct dirent64_raw **sorted;
    size_t count, next;
};

#define MAX_LISTINGS 64
static struct listing listings[MAX_LISTINGS];
static int listings_lock;

static void lock(void) {
    while (__atomic_exchange_n(&listings_lock, 1, __ATOMIC_ACQUIRE)) {
    }
}
static void unlock(void) { __atomic_store_n(&listings_lock, 0, __ATOMIC_RELEASE); }

static void *map(size_t len) {
    long p = raw6(SYS_mmap, 0, (long)len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p < 0 && p > -4096 ? NULL : (void *)p;
}

static void release(struct listing *l) {
    if (l->buf) raw6(SYS_munmap, (long)l->buf, (long)l->buf_len, 0, 0, 0, 0);
    memset(l, 0, sizeof *l);
    l->fd = -1;
}

static int name_cmp(const struct dirent64_raw *a, const struct dirent64_raw *b) {
    return strcmp(a->d_name, b->d_name);
}

/* Heap sort: no recursion and no allocation, safe in a signal handler. */
static void sift(struct dirent64_raw **v, size_t start, size_t end) {
    size_t root = start;
    while (2 * root + 1 < end) {
        size_t child = 2 * root + 1;
        if (child + 1 < end && name_cmp(v[child], v[child + 1]) < 0) child++;
        if (name_cmp(v[root], v[child]) >= 0) return;
        struct dirent64_raw *t = v[root];
        v[root] = v[child];
        v[child] = t;
        root = child;
    }
}
static void sort_entries(struct dirent64_raw **v, size_t n) {
    for (size_t i = n / 2; i-- > 0;) sift(v, i, n);
    for (size_t end = n; end-- > 1;) {
        struct dirent64_raw *t = v[0];
        v[0] = v[end];
        v[end] = t;
        sift(v, 0, end);
    }
}

/* Read the whole directory behind fd (from its current position) into l, sorted. */
static long load(struct listing *l, int fd) {
    size_t cap = 1 << 20, used = 0;
    for (;;) {
        char *buf = map(cap);
        if (!buf) return -ENOMEM;
        if (l->buf) {
            memcpy(buf, l->buf, used);
            raw6(SYS_munmap, (long)l->buf, (long)l->buf_len, 0, 0, 0, 0);
        }
        l->buf = buf;
        l->buf_len = cap;
        for (;;) {
            if (cap - used < 65536) break; /* grow and keep reading */
            long n = raw(SYS_getdents64, fd, (long)(buf + used), 65536, 0, 0);
            if (n < 0) return n;
            if (n == 0) goto done;
            used += (size_t)n;
        }
        cap *= 4;
    }
done:;
    size_t count = 0;
    for (size_t off = 0; off < used; off += ((struct dirent64_raw *)(l->buf + off))->d_reclen) count++;
    size_t index_len = count * sizeof(struct dirent64_raw *);
    struct dirent64_raw **sorted = map(index_len ? index_len : 1);
    if (!sorted) return -ENOMEM;
    size_t i = 0;
    for (size_t off = 0; off < used; off += ((struct dirent64_raw *)(l->buf + off))->d_reclen)
        sorted[i++] = (struct dirent64_raw *)(l->buf + off);
    sort_entries(sorted, count);
    l->fd = fd;
    l->sorted = sorted;
    l->count = count;
    l->next = 0;
    return 0;
}

static long sorted_getdents(int fd, char *out, size_t out_len) {
    lock();
    struct listing *l = NULL;
    long pos = raw6(SYS_lseek, fd, 0, SEEK_CUR, 0, 0, 0);
    for (int i = 0; i < MAX_LISTINGS; i++)
        if (listings[i].buf && listings[i].fd == fd) l = &listings[i];
    if (l && pos == 0) { /* rewound (or fd reused): start over */
        raw6(SYS_munmap, (long)l->sorted, (long)(l->count ? l->count * sizeof(void *) : 1), 0, 0, 0, 0);
        release(l);
        l = NULL;
    }
    if (!l) {
        for (int i = 0; i < MAX_LISTINGS && !l; i++)
            if (!listings[i].buf) l = &listings[i];
        if (!l) { /* too many open listings: fall back to the unsorted order */
            unlock();
            return raw(SYS_getdents64, fd, (long)out, (long)out_len, 0, 0);
        }
        long err = load(l, fd);
        if (err < 0) {
            release(l);
            unlock();
            return err;
        }
    }
    size_t written = 0;
    while (l->next < l->count) {
        struct dirent64_raw *e = l->sorted[l->next];
        if (written + e->d_reclen > out_len) break;
        memcpy(out + written, e, e->d_reclen);
        struct dirent64_raw *copy = (struct dirent64_raw *)(out + written);
        copy->d_ino = name_inode(AT_FDCWD, copy->d_name);
        copy->d_off = (int64_t)(l->next + 1);
        written += e->d_reclen;
        l->next++;
    }
    long ret = (long)written;
    if (written == 0 && l->next < l->count) ret = -EINVAL; /* buffer too small for one entry */
    if (l->next >= l->count && written == 0) {            /* end of directory: forget it */
        raw6(SYS_munmap, (long)l->sorted, (long)(l->count ? l->count * sizeof(void *) : 1), 0, 0, 0, 0);
        release(l);
    }
    unlock();
    return ret;
}

/* ---- the SIGSYS handler ---------------------------------------------------------------- */

static void on_sigsys(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    greg_t *r = ((ucontext_t *)ctx)->uc_mcontext.gregs;
    long nr = info->si_syscall;
    long a = r[REG_RDI], b = r[REG_RSI], c = r[REG_RDX], d = r[REG_R10], e = r[REG_R8];
    /* Which file the call is about, as (dirfd, path). */
    int dirfd = AT_FDCWD;
    const char *path = NULL;
    if (nr == SYS_statx || nr == SYS_newfstatat) dirfd = (int)a, path = (const char *)b;
    else if (nr == SYS_stat || nr == SYS_lstat) path = (const char *)a;
    else dirfd = (int)a; /* fstat, getdents64 */
    int ours = under_root(dirfd, path);

    long ret;
    if (nr == SYS_getdents64 && ours) {
        ret = sorted_getdents((int)a, (char *)b, (size_t)c);
    } else {
        ret = raw(nr, a, b, c, d, e);
        if (ret == 0 && ours) {
            uint64_t ino = name_inode(dirfd, path);
            if (nr == SYS_statx) fix_statx((struct statx *)e, ino);
            else if (nr == SYS_newfstatat) fix_stat((struct stat *)c, ino);
            else fix_stat((struct stat *)b, ino); /* stat, lstat, fstat */
        }
    }
    r[REG_RAX] = ret;
}

__attribute__((constructor)) static void install(void) {
    for (int i = 0; i < MAX_LISTINGS; i++) listings[i].fd = -1;

    const char *r = getenv("REPRO_ROOT");
    if (!r || r[0] != '/' || !realpath(r, root)) {
        static const char msg[] = "reproducible.so: REPRO_ROOT must name an existing directory\n";
        (void)!write(2, msg, sizeof msg - 1);
        _exit(96);
    }
    root_len = str_len(root);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) != 0) _exit(97);

    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        /* the trapped syscalls jump to the MAGIC check (index 11) */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_stat, 6, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_lstat, 5, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_fstat, 4, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_newfstatat, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_statx, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getdents64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[5])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MAGIC, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(98);
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0) _exit(99);
}
