// A preloadable counter of completed sync calls (fsync, fdatasync, msync with MS_SYNC,
// syncfs, sync). The crash test runs its writer child with LD_PRELOAD pointing here and
// checks that every durable acknowledgement was preceded by at least one completed sync:
// a SIGKILL keeps the page cache, so only counting syncs can catch a missing one.
#define _GNU_SOURCE
#include "sync_counter.h"
#include <dlfcn.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

static atomic_ulong completed;

unsigned long zerofs_sync_count(void) { return atomic_load(&completed); }

typedef int (*fd_call)(int);
typedef int (*msync_call)(void *, size_t, int);
typedef void (*void_call)(void);

#define REAL(name, type) static type real_##name; if (!real_##name) real_##name = (type)dlsym(RTLD_NEXT, #name)

int fsync(int fd) {
    REAL(fsync, fd_call);
    int rc = real_fsync(fd);
    if (rc == 0) atomic_fetch_add(&completed, 1);
    return rc;
}

int fdatasync(int fd) {
    REAL(fdatasync, fd_call);
    int rc = real_fdatasync(fd);
    if (rc == 0) atomic_fetch_add(&completed, 1);
    return rc;
}

int msync(void *address, size_t length, int flags) {
    REAL(msync, msync_call);
    int rc = real_msync(address, length, flags);
    if (rc == 0 && (flags & MS_SYNC)) atomic_fetch_add(&completed, 1);
    return rc;
}

int syncfs(int fd) {
    REAL(syncfs, fd_call);
    int rc = real_syncfs(fd);
    if (rc == 0) atomic_fetch_add(&completed, 1);
    return rc;
}

void sync(void) {
    REAL(sync, void_call);
    real_sync();
    atomic_fetch_add(&completed, 1);
}
