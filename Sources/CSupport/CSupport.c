#define _GNU_SOURCE
#include "CSupport.h"
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <sys/uio.h>
#include <stdio.h>

int64_t imgmap_copy_file_range(int fd_in, int64_t off_in, int fd_out, int64_t off_out, uint64_t len) {
    loff_t in = off_in, out = off_out;
    return copy_file_range(fd_in, &in, fd_out, &out, (size_t)len, 0);
}

int64_t imgmap_seek_data(int fd, int64_t offset) { return lseek(fd, offset, SEEK_DATA); }
int64_t imgmap_seek_hole(int fd, int64_t offset) { return lseek(fd, offset, SEEK_HOLE); }
int imgmap_set_pipe_size(int fd, int size) { return fcntl(fd, F_SETPIPE_SZ, size); }
int imgmap_get_pipe_size(int fd) { return fcntl(fd, F_GETPIPE_SZ); }

int64_t imgmap_block_device_size(int fd) {
    uint64_t size = 0;
    if (ioctl(fd, BLKGETSIZE64, &size) != 0) return -1;
    return (int64_t)size;
}

int imgmap_open_exclusive(const char *path, unsigned int mode) {
    return open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
}

int imgmap_open_anonymous(const char *directory, unsigned int mode) {
#ifdef O_TMPFILE
    return open(directory, O_TMPFILE | O_WRONLY | O_CLOEXEC, (mode_t)mode);
#else
    errno = EOPNOTSUPP;
    return -1;
#endif
}

int imgmap_link_anonymous(int fd, const char *path) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
}

int64_t imgmap_splice_to_pipe(int fd_in, int64_t offset, int pipe_out, uint64_t len) {
    loff_t in = offset;
    return splice(fd_in, &in, pipe_out, NULL, (size_t)len, SPLICE_F_MOVE | SPLICE_F_MORE);
}

int64_t imgmap_vmsplice(int pipe_out, const void *buffer, uint64_t len) {
    struct iovec iov = { .iov_base = (void *)buffer, .iov_len = (size_t)len };
    return vmsplice(pipe_out, &iov, 1, 0);
}

// Temporary outputs removed on a signal that ends the process. The handler may only make async-signal-safe
// calls (unlink, _exit), so the paths live in fixed slots: a slot's path is written before the slot is
// marked used, and a used slot is never rewritten, so the handler never sees half a path.
#include <signal.h>
#include <string.h>

#define IMGMAP_TEMPORARY_SLOTS 16
#define IMGMAP_TEMPORARY_PATH_MAX 4096
static char temporary_paths[IMGMAP_TEMPORARY_SLOTS][IMGMAP_TEMPORARY_PATH_MAX];
static int temporary_used[IMGMAP_TEMPORARY_SLOTS];

static void imgmap_remove_temporaries_and_exit(int sig) {
    for (int i = 0; i < IMGMAP_TEMPORARY_SLOTS; i++) {
        if (__atomic_load_n(&temporary_used[i], __ATOMIC_SEQ_CST)) unlink(temporary_paths[i]);
    }
    _exit(128 + sig);
}

// Every signal whose default action ends the process, except those that report a fault of the
// process itself (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS), which are left to the runtime's crash
// report. SIGPIPE and SIGXFSZ are ignored by the CLI (write errors instead); a signal already ignored
// stays ignored. The real-time signals end the process too by default.
int imgmap_install_cleanup_handlers(void) {
    int signals[64];
    unsigned count = 0;
    const int fixed[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF,
                         SIGXCPU, SIGXFSZ, SIGPIPE, SIGIO, SIGPWR, SIGSTKFLT};
    for (unsigned i = 0; i < sizeof fixed / sizeof fixed[0]; i++) signals[count++] = fixed[i];
    for (int s = SIGRTMIN; s <= SIGRTMAX && count < sizeof signals / sizeof signals[0]; s++) signals[count++] = s;
    for (unsigned i = 0; i < count; i++) {
        struct sigaction old;
        if (sigaction(signals[i], NULL, &old) != 0) continue;
        // Ignored by whoever started us (nohup, a background job of a non-interactive shell): keep it so.
        if (old.sa_handler == SIG_IGN) continue;
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = imgmap_remove_temporaries_and_exit;
        sigfillset(&action.sa_mask);
        (void)sigaction(signals[i], &action, NULL);
    }
    return 0;
}

int imgmap_register_temporary(const char *path) {
    size_t length = strlen(path);
    if (length >= IMGMAP_TEMPORARY_PATH_MAX) return -1;
    for (int i = 0; i < IMGMAP_TEMPORARY_SLOTS; i++) {
        int expected = 0;
        // 2 = being filled: not yet visible to the handler, not taken by another thread.
        if (__atomic_compare_exchange_n(&temporary_used[i], &expected, 2, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            memcpy(temporary_paths[i], path, length + 1);
            __atomic_store_n(&temporary_used[i], 1, __ATOMIC_SEQ_CST);
            return i;
        }
    }
    return -1;
}

void imgmap_unregister_temporary(int slot) {
    if (slot >= 0 && slot < IMGMAP_TEMPORARY_SLOTS) __atomic_store_n(&temporary_used[slot], 0, __ATOMIC_SEQ_CST);
}

int imgmap_punch_hole(int fd, int64_t offset, int64_t len) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len);
}

int imgmap_zero_range(int fd, int64_t offset, int64_t len) {
    return fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, len);
}
