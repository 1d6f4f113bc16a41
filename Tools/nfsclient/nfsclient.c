/*
 * nfsclient.c - test and benchmark driver for an NFSv3 server, built on the
 * libnfs synchronous API.
 *
 * Build:  gcc -O2 -o nfsclient nfsclient.c $(pkg-config --cflags --libs libnfs)
 *
 * Usage:  nfsclient URL COMMAND [ARGS...]
 *
 *   URL is nfs://HOST/EXPORT?version=3&nfsport=PORT&mountport=PORT
 *   (nfsport and mountport make libnfs skip the portmapper).  All PATH
 *   arguments are paths inside the export, e.g. "/" or "/dir/file".
 *
 *   posix DIR             run a POSIX-semantics scenario in DIR/t; prints
 *                         "ok <step>" lines, then "ok all" (exit 0), or
 *                         "FAIL <step>: <reason>" and exits 1
 *   put LOCAL REMOTE      copy a local file into the export (1 MiB writes, fsync)
 *   get REMOTE LOCAL      copy a file out of the export (1 MiB reads)
 *   expect-rofs PATH      creat and mkdir of PATH must both fail with EROFS
 *   cat PATH              print a file's bytes to stdout
 *   stat PATH             print "size=<n> mode=<octal> nlink=<n> ino=<n>"
 *   ls PATH               print each entry name (without . and ..)
 *   mkdir PATH | rm PATH  create a directory / unlink a file
 *   write PATH TEXT       create or truncate PATH and write TEXT into it
 *   bench PHASE N CLIENTS DIR
 *       PHASE is create | stat | readdir | read | unlink: CLIENTS forked
 *       processes, each with its own mount, work on N files DIR/c<k>/f<i>
 *       (create makes DIR/c<k> if absent and writes 4 KiB into each file;
 *       read opens, reads 4 KiB and closes; readdir lists DIR/c<k> once and
 *       counts each listed f-entry as one op).
 *       PHASE seqwrite | seqread with N = MiB: one file DIR/seq (DIR/seq<k>
 *       when CLIENTS > 1) written or read in 1 MiB calls (seqwrite ends
 *       with fsync).  Prints one line:
 *       phase=<p> clients=<c> ops=<n> seconds=<s> ops_per_sec=<x> [mb_per_sec=<x>]
 *       Timing starts once every client has mounted and prepared, and ends
 *       when the last one has exited.
 *
 * Exit status: 0 on success, 1 on a failed check or error, 2 on bad usage.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h> /* struct timeval, used by libnfs.h */
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nfsc/libnfs.h>

#define PATHLEN 1024
#define CHUNK (1024 * 1024)
#define SMALL 4096
#define NSUB 300

static const char *errtext(struct nfs_context *nfs)
{
    const char *e = nfs ? nfs_get_error(nfs) : NULL;
    return (e && *e) ? e : "(no error text)";
}

/* Report an error from a libnfs call (rc = -errno) and return 1. */
static int report(struct nfs_context *nfs, const char *what, const char *path, int rc)
{
    fprintf(stderr, "error: %s %s: %s (rc=%d, %s)\n", what, path, errtext(nfs),
            rc, rc < 0 ? strerror(-rc) : "unexpected result");
    return 1;
}

static void join(char *out, const char *dir, const char *name)
{
    size_t n = strlen(dir);
    int len = snprintf(out, PATHLEN, "%s%s%s", dir,
                       (n > 0 && dir[n - 1] == '/') ? "" : "/", name);
    if (len < 0 || len >= PATHLEN) {
        fprintf(stderr, "error: path too long: %s/%s\n", dir, name);
        exit(2);
    }
}

static double now_sec(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        perror("clock_gettime");
        exit(1);
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Pseudo-random bytes (splitmix64 from seed): data no server can compress, so the data
 * phases measure bytes stored, not a compressor's ratio. */
static void fill_pattern(unsigned char *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15u + 1;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t z = (x += 0x9E3779B97F4A7C15u);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
        z ^= z >> 31;
        for (size_t b = 0; b < 8 && i + b < len; b++)
            buf[i + b] = (unsigned char)(z >> (8 * b));
    }
}

/* Write all of buf at off; returns 0 or -errno. */
static int pwrite_all(struct nfs_context *nfs, struct nfsfh *fh, uint64_t off,
                      const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        int rc = nfs_pwrite(nfs, fh, off + done, len - done,
                            (const unsigned char *)buf + done);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return -EIO;
        done += (size_t)rc;
    }
    return 0;
}

/* Read up to len bytes at off, stopping early only at EOF; returns bytes or -errno. */
static long pread_full(struct nfs_context *nfs, struct nfsfh *fh, uint64_t off,
                       void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        int rc = nfs_pread(nfs, fh, off + done, len - done,
                           (unsigned char *)buf + done);
        if (rc < 0)
            return rc;
        if (rc == 0)
            break;
        done += (size_t)rc;
    }
    return (long)done;
}

/* Create a context and mount the export named by url; NULL on failure. */
static struct nfs_context *connect_url(const char *url_str)
{
    struct nfs_context *nfs = nfs_init_context();
    if (nfs == NULL) {
        fprintf(stderr, "error: nfs_init_context failed\n");
        return NULL;
    }
    /* Parsing applies ?version=, nfsport= and mountport= to the context. */
    struct nfs_url *url = nfs_parse_url_dir(nfs, url_str);
    int rc = -EINVAL;
    if (url == NULL) {
        fprintf(stderr, "error: bad URL %s: %s\n", url_str, errtext(nfs));
    } else {
        nfs_set_dircache(nfs, 0); /* always ask the server, never a cached listing */
        if ((rc = nfs_mount(nfs, url->server, url->path)) != 0)
            fprintf(stderr, "error: mount %s:%s: %s (rc=%d)\n", url->server,
                    url->path, errtext(nfs), rc);
        nfs_destroy_url(url);
    }
    if (rc != 0) {
        nfs_destroy_context(nfs);
        return NULL;
    }
    return nfs;
}

/* ------------------------------------------------------------------ posix */

/* Fail the scenario with a formatted reason. */
static void fail(const char *step, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void fail(const char *step, const char *fmt, ...)
{
    va_list ap;
    printf("FAIL %s: ", step);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    exit(1);
}

/* Fail the scenario unless rc >= 0 (libnfs returns -errno on failure). */
static void ck(struct nfs_context *nfs, const char *step, int rc)
{
    if (rc < 0)
        fail(step, "%s (rc=%d, %s)", errtext(nfs), rc, strerror(-rc));
}

/* Fail the scenario unless rc == -want. */
static void ck_err(struct nfs_context *nfs, const char *step, int rc, int want)
{
    if (rc != -want)
        fail(step, "expected %s, got rc=%d (%s) %s", strerror(want), rc,
             rc < 0 ? strerror(-rc) : "success", rc < 0 ? errtext(nfs) : "");
}

static void ok(const char *step)
{
    printf("ok %s\n", step);
    fflush(stdout);
}

/* stat path and require the given size; returns the stat result. */
static struct nfs_stat_64 ck_size(struct nfs_context *nfs, const char *step,
                                  const char *path, uint64_t want)
{
    struct nfs_stat_64 st;
    ck(nfs, step, nfs_stat64(nfs, path, &st));
    if (st.nfs_size != want)
        fail(step, "expected size %" PRIu64 ", got %" PRIu64, want, st.nfs_size);
    return st;
}

/* Read len bytes at off and require them to equal want[0..expect). */
static void ck_read(struct nfs_context *nfs, const char *step, struct nfsfh *fh,
                    uint64_t off, size_t len, const unsigned char *want, size_t expect)
{
    static unsigned char buf[64 * 1024];
    if (len > sizeof buf)
        fail(step, "internal: read of %zu bytes exceeds the check buffer", len);
    long n = pread_full(nfs, fh, off, buf, len);
    ck(nfs, step, (int)n);
    if ((size_t)n != expect)
        fail(step, "expected %zu bytes at offset %" PRIu64 ", got %ld", expect, off, n);
    for (size_t i = 0; i < expect; i++)
        if (buf[i] != (want ? want[i] : 0))
            fail(step, "byte at offset %" PRIu64 " is %u, expected %u", off + i,
                 buf[i], want ? want[i] : 0u);
}

static int cmd_posix(struct nfs_context *nfs, const char *dir, const char *unused)
{
    char t[PATHLEN], a[PATHLEN], b[PATHLEN], c[PATHLEN], s[PATHLEN], sub[PATHLEN], p[PATHLEN];
    enum { DATA = 10000, HOLE = 1 << 20, SPAN = 64 * 1024 };
    static unsigned char pat[DATA];
    struct nfsfh *fh;
    struct nfs_stat_64 st, st2;

    (void)unused;
    join(t, dir, "t");
    join(a, t, "a");
    join(b, t, "b");
    join(c, t, "c");
    join(s, t, "s");
    join(sub, t, "sub");
    fill_pattern(pat, DATA, 1);

    ck(nfs, "mkdir t", nfs_mkdir(nfs, t));
    ok("mkdir t");

    ck(nfs, "creat t/a", nfs_creat(nfs, a, 0644, &fh));
    ck(nfs, "pwrite t/a", pwrite_all(nfs, fh, 0, pat, DATA));
    ck(nfs, "close t/a", nfs_close(nfs, fh));
    ok("write t/a");

    st = ck_size(nfs, "stat t/a", a, DATA);
    if (!S_ISREG((mode_t)st.nfs_mode))
        fail("stat t/a", "expected a regular file, got mode %" PRIo64, st.nfs_mode);
    ok("stat t/a");

    ck(nfs, "open t/a", nfs_open(nfs, a, O_RDONLY, &fh));
    ck_read(nfs, "pread t/a", fh, 0, DATA, pat, DATA);
    ck(nfs, "close t/a", nfs_close(nfs, fh));
    ok("read t/a");

    ck(nfs, "open t/a rw", nfs_open(nfs, a, O_RDWR, &fh));
    ck(nfs, "pwrite sparse", pwrite_all(nfs, fh, HOLE, pat, SMALL));
    for (uint64_t off = DATA; off < HOLE; off += SPAN) {
        size_t len = HOLE - off < SPAN ? (size_t)(HOLE - off) : SPAN;
        ck_read(nfs, "pread hole", fh, off, len, NULL, len);
    }
    ck_read(nfs, "pread after hole", fh, HOLE, 2 * SMALL, pat, SMALL);
    ck(nfs, "close t/a", nfs_close(nfs, fh));
    ck_size(nfs, "stat sparse", a, HOLE + SMALL);
    ok("sparse write");

    ck(nfs, "truncate t/a", nfs_truncate(nfs, a, 5000));
    ck_size(nfs, "stat truncated", a, 5000);
    ck(nfs, "open truncated", nfs_open(nfs, a, O_RDONLY, &fh));
    ck_read(nfs, "pread truncated", fh, 0, DATA, pat, 5000);
    ck(nfs, "close truncated", nfs_close(nfs, fh));
    ok("truncate");

    ck(nfs, "rename t/a t/b", nfs_rename(nfs, a, b));
    ck_err(nfs, "stat t/a after rename", nfs_stat64(nfs, a, &st), ENOENT);
    ck_size(nfs, "stat t/b after rename", b, 5000);
    ok("rename");

    ck(nfs, "link t/b t/c", nfs_link(nfs, b, c));
    st = ck_size(nfs, "stat t/b after link", b, 5000);
    if (st.nfs_nlink != 2)
        fail("nlink t/b", "expected 2, got %" PRIu64, st.nfs_nlink);
    st2 = ck_size(nfs, "stat t/c", c, 5000);
    if (st2.nfs_ino != st.nfs_ino)
        fail("ino t/c", "expected inode %" PRIu64 ", got %" PRIu64, st.nfs_ino, st2.nfs_ino);
    ok("link");

    char target[256];
    memset(target, 0, sizeof target);
    ck(nfs, "symlink t/s", nfs_symlink(nfs, "b", s));
    ck(nfs, "readlink t/s", nfs_readlink(nfs, s, target, (int)sizeof target - 1));
    if (strcmp(target, "b") != 0)
        fail("readlink t/s", "expected \"b\", got \"%s\"", target);
    ck(nfs, "lstat t/s", nfs_lstat64(nfs, s, &st));
    if (!S_ISLNK((mode_t)st.nfs_mode))
        fail("lstat t/s", "expected a symlink, got mode %" PRIo64, st.nfs_mode);
    ok("symlink");

    ck(nfs, "mkdir t/sub", nfs_mkdir(nfs, sub));
    for (int i = 0; i < NSUB; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%d", i);
        join(p, sub, name);
        ck(nfs, "creat t/sub/f*", nfs_creat(nfs, p, 0644, &fh));
        ck(nfs, "close t/sub/f*", nfs_close(nfs, fh));
    }
    ok("create 300 files");

    struct nfsdir *d;
    struct nfsdirent *ent;
    unsigned char seen[NSUB];
    int count = 0;
    memset(seen, 0, sizeof seen);
    ck(nfs, "opendir t/sub", nfs_opendir(nfs, sub, &d));
    while ((ent = nfs_readdir(nfs, d)) != NULL) {
        if (strcmp(ent->name, ".") == 0 || strcmp(ent->name, "..") == 0)
            continue;
        char *end = NULL;
        long i = -1;
        if (ent->name[0] == 'f' && ent->name[1] >= '0' && ent->name[1] <= '9')
            i = strtol(ent->name + 1, &end, 10);
        if (i < 0 || i >= NSUB || *end != '\0' || seen[i])
            fail("readdir t/sub", "unexpected or duplicate entry \"%s\"", ent->name);
        seen[i] = 1;
        count++;
    }
    nfs_closedir(nfs, d);
    if (count != NSUB)
        fail("readdir t/sub", "expected %d entries, got %d", NSUB, count);
    ok("readdir");

    for (int i = 0; i < NSUB; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%d", i);
        join(p, sub, name);
        ck(nfs, "unlink t/sub/f*", nfs_unlink(nfs, p));
    }
    ck(nfs, "rmdir t/sub", nfs_rmdir(nfs, sub));
    ok("unlink 300 files");

    ck_err(nfs, "rmdir non-empty t", nfs_rmdir(nfs, t), ENOTEMPTY);
    ok("rmdir non-empty");

    ck(nfs, "unlink t/b", nfs_unlink(nfs, b));
    ck(nfs, "unlink t/c", nfs_unlink(nfs, c));
    ck(nfs, "unlink t/s", nfs_unlink(nfs, s));
    ck(nfs, "rmdir t", nfs_rmdir(nfs, t));
    ck_err(nfs, "stat t after rmdir", nfs_stat64(nfs, t, &st), ENOENT);
    ok("cleanup");
    ok("all");
    return 0;
}
/* ------------------------------------------------------ other commands */

static int cmd_put(struct nfs_context *nfs, const char *local, const char *remote)
{
    FILE *in = fopen(local, "rb");
    unsigned char *buf = malloc(CHUNK);
    struct nfsfh *fh;
    const char *what = "create";
    uint64_t off = 0;
    size_t got;
    int r, r2;

    if (in == NULL || buf == NULL) {
        fprintf(stderr, "error: open %s: %s\n", local, strerror(errno));
        free(buf);
        if (in != NULL)
            fclose(in);
        return 1;
    }
    if ((r = nfs_create(nfs, remote, O_TRUNC, 0644, &fh)) == 0) {
        what = "pwrite";
        do {
            got = fread(buf, 1, CHUNK, in);
            r = got > 0 ? pwrite_all(nfs, fh, off, buf, got) : 0;
            off += got;
        } while (r == 0 && got == CHUNK);
        if (r == 0 && ferror(in)) {
            what = "local read of";
            r = -EIO;
        }
        if (r == 0) {
            what = "fsync";
            r = nfs_fsync(nfs, fh);
        }
        r2 = nfs_close(nfs, fh);
        if (r == 0) {
            what = "close";
            r = r2;
        }
    }
    free(buf);
    fclose(in);
    return r != 0 ? report(nfs, what, remote, r) : 0;
}

/* Copy a remote file to a stdio stream in 1 MiB reads. */
static int copy_out(struct nfs_context *nfs, const char *remote, FILE *out)
{
    unsigned char *buf = malloc(CHUNK);
    struct nfsfh *fh;
    uint64_t off = 0;
    long n = 0;
    int r;

    if (buf == NULL) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    if ((r = nfs_open(nfs, remote, O_RDONLY, &fh)) != 0) {
        free(buf);
        return report(nfs, "open", remote, r);
    }
    do {
        n = pread_full(nfs, fh, off, buf, CHUNK);
        if (n > 0 && fwrite(buf, 1, (size_t)n, out) != (size_t)n) {
            fprintf(stderr, "error: local write failed: %s\n", strerror(errno));
            n = -EIO;
        }
        off += n > 0 ? (uint64_t)n : 0;
    } while (n == CHUNK);
    free(buf);
    r = nfs_close(nfs, fh);
    if (n < 0)
        return report(nfs, "pread", remote, (int)n);
    return r != 0 ? report(nfs, "close", remote, r) : 0;
}

static int cmd_get(struct nfs_context *nfs, const char *remote, const char *local)
{
    FILE *out = fopen(local, "wb");
    if (out == NULL) {
        fprintf(stderr, "error: open %s: %s\n", local, strerror(errno));
        return 1;
    }
    int rc = copy_out(nfs, remote, out);
    if (fclose(out) != 0) {
        fprintf(stderr, "error: close %s: %s\n", local, strerror(errno));
        rc = 1;
    }
    return rc;
}

static int cmd_cat(struct nfs_context *nfs, const char *path, const char *unused)
{
    (void)unused;
    return copy_out(nfs, path, stdout);
}

static int cmd_expect_rofs(struct nfs_context *nfs, const char *path, const char *unused)
{
    struct nfsfh *fh;
    (void)unused;
    int rc = nfs_creat(nfs, path, 0644, &fh);
    printf("creat %s: rc=%d (%s)\n", path, rc, rc < 0 ? strerror(-rc) : "success");
    if (rc == 0 && nfs_close(nfs, fh) != 0)
        printf("close %s failed: %s\n", path, errtext(nfs));
    int bad = rc != -EROFS;
    rc = nfs_mkdir(nfs, path);
    printf("mkdir %s: rc=%d (%s)\n", path, rc, rc < 0 ? strerror(-rc) : "success");
    bad |= rc != -EROFS;
    printf(bad ? "FAIL expected EROFS from both\n" : "ok read-only\n");
    return bad;
}

static int cmd_stat(struct nfs_context *nfs, const char *path, const char *unused)
{
    struct nfs_stat_64 st;
    (void)unused;
    int r = nfs_stat64(nfs, path, &st);
    if (r != 0)
        return report(nfs, "stat", path, r);
    printf("size=%" PRIu64 " mode=%" PRIo64 " nlink=%" PRIu64 " ino=%" PRIu64 "\n",
           st.nfs_size, st.nfs_mode, st.nfs_nlink, st.nfs_ino);
    return 0;
}

static int cmd_ls(struct nfs_context *nfs, const char *path, const char *unused)
{
    struct nfsdir *d;
    struct nfsdirent *ent;
    (void)unused;
    int r = nfs_opendir(nfs, path, &d);
    if (r != 0)
        return report(nfs, "opendir", path, r);
    while ((ent = nfs_readdir(nfs, d)) != NULL)
        if (strcmp(ent->name, ".") != 0 && strcmp(ent->name, "..") != 0)
            printf("%s\n", ent->name);
    nfs_closedir(nfs, d);
    return 0;
}

static int cmd_mkdir(struct nfs_context *nfs, const char *path, const char *unused)
{
    (void)unused;
    int r = nfs_mkdir(nfs, path);
    return r != 0 ? report(nfs, "mkdir", path, r) : 0;
}

static int cmd_rm(struct nfs_context *nfs, const char *path, const char *unused)
{
    (void)unused;
    int r = nfs_unlink(nfs, path);
    return r != 0 ? report(nfs, "unlink", path, r) : 0;
}

static int cmd_write(struct nfs_context *nfs, const char *path, const char *text)
{
    struct nfsfh *fh;
    int r = nfs_create(nfs, path, O_TRUNC, 0644, &fh);
    if (r != 0)
        return report(nfs, "create", path, r);
    r = pwrite_all(nfs, fh, 0, text, strlen(text));
    int r2 = nfs_close(nfs, fh);
    if (r != 0)
        return report(nfs, "pwrite", path, r);
    return r2 != 0 ? report(nfs, "close", path, r2) : 0;
}

/* ------------------------------------------------------------- bench */

struct bench {
    const char *url, *phase, *dir;
    long n; /* files per client, or MiB for seqwrite/seqread */
    int clients;
};

static int is_seq(const char *phase)
{
    return strcmp(phase, "seqwrite") == 0 || strcmp(phase, "seqread") == 0;
}

/* Set-up done before the barrier: mount, then create DIR/c<k> or open the
 * sequential file.  Returns 0 or 1 (after printing why). */
static int bench_prepare(const struct bench *bp, int k, struct nfs_context *nfs,
                         char *cdir, char *seq, struct nfsfh **fh)
{
    char name[32];
    int r = 0;
    snprintf(name, sizeof name, "c%d", k);
    join(cdir, bp->dir, name);
    snprintf(name, sizeof name, bp->clients > 1 ? "seq%d" : "seq", k);
    join(seq, bp->dir, name);
    if (strcmp(bp->phase, "seqwrite") == 0)
        r = nfs_create(nfs, seq, O_TRUNC, 0644, fh);
    else if (strcmp(bp->phase, "seqread") == 0)
        r = nfs_open(nfs, seq, O_RDONLY, fh);
    else if (strcmp(bp->phase, "create") == 0 && (r = nfs_mkdir(nfs, cdir)) == -EEXIST)
        r = 0;
    return r != 0 ? report(nfs, "prepare", is_seq(bp->phase) ? seq : cdir, r) : 0;
}

/* The timed work of one client; returns 0 or 1 (after printing why). */
static int bench_work(const struct bench *bp, struct nfs_context *nfs, const char *cdir,
                      const char *seq, struct nfsfh *fh, unsigned char *buf)
{
    const char *ph = bp->phase;
    char p[PATHLEN], name[32];
    long got;
    int r;

    if (is_seq(ph)) {
        int wr = strcmp(ph, "seqwrite") == 0;
        for (long i = 0; i < bp->n; i++) {
            uint64_t off = (uint64_t)i * CHUNK;
            got = wr ? pwrite_all(nfs, fh, off, buf, CHUNK) : pread_full(nfs, fh, off, buf, CHUNK);
            if (got < 0)
                return report(nfs, wr ? "pwrite" : "pread", seq, (int)got);
            if (!wr && got != CHUNK)
                return fprintf(stderr, "error: short read of %s at %" PRIu64 ": %ld bytes\n",
                               seq, off, got), 1;
        }
        if (wr && (r = nfs_fsync(nfs, fh)) != 0)
            return report(nfs, "fsync", seq, r);
        return (r = nfs_close(nfs, fh)) != 0 ? report(nfs, "close", seq, r) : 0;
    }
    if (strcmp(ph, "readdir") == 0) {
        struct nfsdir *d;
        struct nfsdirent *ent;
        long count = 0;
        if ((r = nfs_opendir(nfs, cdir, &d)) != 0)
            return report(nfs, "opendir", cdir, r);
        while ((ent = nfs_readdir(nfs, d)) != NULL)
            count += ent->name[0] == 'f';
        nfs_closedir(nfs, d);
        if (count != bp->n)
            return fprintf(stderr, "error: readdir %s: expected %ld f-entries, got %ld\n",
                           cdir, bp->n, count), 1;
        return 0;
    }
    for (long i = 0; i < bp->n; i++) {
        struct nfs_stat_64 st;
        snprintf(name, sizeof name, "f%ld", i);
        join(p, cdir, name);
        if (strcmp(ph, "create") == 0) {
            if ((r = nfs_creat(nfs, p, 0644, &fh)) != 0)
                return report(nfs, "creat", p, r);
            if ((r = pwrite_all(nfs, fh, 0, buf, SMALL)) != 0 || (r = nfs_close(nfs, fh)) != 0)
                return report(nfs, "pwrite/close", p, r);
        } else if (strcmp(ph, "stat") == 0) {
            if ((r = nfs_stat64(nfs, p, &st)) != 0)
                return report(nfs, "stat", p, r);
        } else if (strcmp(ph, "read") == 0) {
            if ((r = nfs_open(nfs, p, O_RDONLY, &fh)) != 0)
                return report(nfs, "open", p, r);
            if ((got = pread_full(nfs, fh, 0, buf, SMALL)) != SMALL)
                return got < 0 ? report(nfs, "pread", p, (int)got)
                               : (fprintf(stderr, "error: short read of %s: %ld bytes\n", p, got), 1);
            if ((r = nfs_close(nfs, fh)) != 0)
                return report(nfs, "close", p, r);
        } else if ((r = nfs_unlink(nfs, p)) != 0) {
            return report(nfs, "unlink", p, r);
        }
    }
    return 0;
}

/* One forked client: prepare, report readiness ('R' or 'E'), wait for the
 * parent's go byte (EOF instead means abort), then work.  Returns exit code. */
static int bench_client(const struct bench *bp, int k, int ready_fd, int go_fd)
{
    char cdir[PATHLEN], seq[PATHLEN], go = 0;
    struct nfs_context *nfs = connect_url(bp->url);
    unsigned char *buf = malloc(CHUNK);
    struct nfsfh *fh = NULL;
    int rc = nfs == NULL || buf == NULL || bench_prepare(bp, k, nfs, cdir, seq, &fh) != 0;
    ssize_t r;

    if (write(ready_fd, rc ? "E" : "R", 1) != 1 || rc)
        return 1;
    while ((r = read(go_fd, &go, 1)) < 0 && errno == EINTR)
        ;
    if (r != 1 || go != 'G')
        return 1; /* another client failed to prepare */
    fill_pattern(buf, CHUNK, (uint64_t)k);
    rc = bench_work(bp, nfs, cdir, seq, fh, buf);
    free(buf);
    nfs_destroy_context(nfs);
    return rc;
}

static int cmd_bench(const struct bench *bp)
{
    int ready[2], go[2], failed = 0, started = 0;
    pid_t *pids = calloc((size_t)bp->clients, sizeof *pids);
    if (pids == NULL || pipe(ready) != 0 || pipe(go) != 0) {
        fprintf(stderr, "error: bench setup: %s\n", strerror(errno));
        return 1;
    }
    fflush(stdout);
    fflush(stderr);
    for (; started < bp->clients; started++) {
        if ((pids[started] = fork()) < 0) {
            fprintf(stderr, "error: fork: %s\n", strerror(errno));
            failed = 1;
            break;
        }
        if (pids[started] == 0) {
            close(ready[0]);
            close(go[1]);
            _exit(bench_client(bp, started, ready[1], go[0]));
        }
    }
    close(ready[1]);
    close(go[0]);
    for (int k = 0; k < started && !failed; k++) {
        char ch = 0;
        ssize_t r;
        while ((r = read(ready[0], &ch, 1)) < 0 && errno == EINTR)
            ;
        failed = r != 1 || ch != 'R';
    }
    double t0 = now_sec();
    for (int k = 0; k < started && !failed; k++) /* release everyone at once */
        if (write(go[1], "G", 1) != 1)
            failed = 1;
    close(go[1]); /* EOF without a go byte tells waiting clients to abort */
    for (int k = 0; k < started; k++) {
        int status;
        pid_t w;
        while ((w = waitpid(pids[k], &status, 0)) < 0 && errno == EINTR)
            ;
        if (w < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed = 1;
    }
    double secs = now_sec() - t0;
    close(ready[0]);
    free(pids);
    if (failed) {
        fprintf(stderr, "error: bench %s failed (see messages above)\n", bp->phase);
        return 1;
    }
    long ops = bp->n * bp->clients;
    if (secs <= 0)
        secs = 1e-9;
    printf("phase=%s clients=%d ops=%ld seconds=%.6f ops_per_sec=%.2f", bp->phase,
           bp->clients, ops, secs, (double)ops / secs);
    if (is_seq(bp->phase))
        printf(" mb_per_sec=%.2f", (double)ops / secs); /* one op is 1 MiB */
    printf("\n");
    return 0;
}

/* -------------------------------------------------------------- main */

static int usage(void)
{
    fprintf(stderr,
            "usage: nfsclient URL COMMAND [ARGS]\n"
            "  URL: nfs://HOST/EXPORT?version=3&nfsport=PORT&mountport=PORT\n"
            "  commands: posix DIR | put LOCAL REMOTE | get REMOTE LOCAL |\n"
            "            expect-rofs PATH | cat PATH | stat PATH | ls PATH |\n"
            "            mkdir PATH | write PATH TEXT | rm PATH |\n"
            "            bench create|stat|readdir|read|unlink N CLIENTS DIR |\n"
            "            bench seqwrite|seqread MIB 1 DIR\n");
    return 2;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int nargs;
        int (*fn)(struct nfs_context *, const char *, const char *);
    } cmds[] = {
        {"posix", 1, cmd_posix}, {"put", 2, cmd_put}, {"get", 2, cmd_get},
        {"expect-rofs", 1, cmd_expect_rofs}, {"cat", 1, cmd_cat}, {"stat", 1, cmd_stat},
        {"ls", 1, cmd_ls}, {"mkdir", 1, cmd_mkdir}, {"write", 2, cmd_write}, {"rm", 1, cmd_rm},
    };
    if (argc < 4)
        return usage();
    const char *url = argv[1], *cmd = argv[2];
    int nargs = argc - 3;

    if (strcmp(cmd, "bench") == 0) {
        static const char *phases[] = {"create", "stat", "readdir", "read",
                                       "unlink", "seqwrite", "seqread"};
        struct bench b = {url, argv[3], NULL, 0, 0};
        char *e1 = NULL, *e2 = NULL;
        int known = 0;
        if (nargs != 4)
            return usage();
        for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++)
            known |= strcmp(b.phase, phases[i]) == 0;
        b.n = strtol(argv[4], &e1, 10);
        b.clients = (int)strtol(argv[5], &e2, 10);
        b.dir = argv[6];
        if (!known || *e1 != '\0' || *e2 != '\0' || b.n < 0 || b.clients < 1 || b.clients > 1024)
            return usage();
        return cmd_bench(&b);
    }

    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(cmd, cmds[i].name) != 0)
            continue;
        if (cmds[i].nargs != nargs)
            return usage();
        struct nfs_context *nfs = connect_url(url);
        if (nfs == NULL)
            return 1;
        int rc = cmds[i].fn(nfs, argv[3], nargs > 1 ? argv[4] : NULL);
        if (fflush(stdout) != 0)
            rc = 1;
        /* UMNT only drops the server's mount-table entry; failure is not fatal. */
        int r = nfs_umount(nfs);
        if (r != 0)
            fprintf(stderr, "warning: umount: %s (rc=%d)\n", errtext(nfs), r);
        nfs_destroy_context(nfs);
        return rc;
    }
    return usage();
}
