#define _GNU_SOURCE
#include "CSupport.h"
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <sys/uio.h>

int64_t imgmap_copy_file_range(int fd_in, int64_t off_in, int fd_out, int64_t off_out, uint64_t len) {
    loff_t in = off_in, out = off_out;
    return copy_file_range(fd_in, &in, fd_out, &out, (size_t)len, 0);
}

int64_t imgmap_seek_data(int fd, int64_t offset) { return lseek(fd, offset, SEEK_DATA); }
int64_t imgmap_seek_hole(int fd, int64_t offset) { return lseek(fd, offset, SEEK_HOLE); }
int imgmap_set_pipe_size(int fd, int size) { return fcntl(fd, F_SETPIPE_SZ, size); }
int imgmap_get_pipe_size(int fd) { return fcntl(fd, F_GETPIPE_SZ); }

int imgmap_punch_hole(int fd, int64_t offset, int64_t len) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len);
}

int imgmap_fadvise_sequential(int fd, int64_t offset, int64_t len) {
    return posix_fadvise(fd, offset, len, POSIX_FADV_SEQUENTIAL);
}

int64_t imgmap_block_device_size(int fd) {
    uint64_t size = 0;
    if (ioctl(fd, BLKGETSIZE64, &size) != 0) return -1;
    return (int64_t)size;
}

int imgmap_open_exclusive(const char *path, unsigned int mode) {
    return open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
}

int64_t imgmap_splice_to_pipe(int fd_in, int64_t offset, int pipe_out, uint64_t len) {
    loff_t in = offset;
    return splice(fd_in, &in, pipe_out, NULL, (size_t)len, SPLICE_F_MOVE | SPLICE_F_MORE);
}

int64_t imgmap_vmsplice(int pipe_out, const void *buffer, uint64_t len) {
    struct iovec iov = { .iov_base = (void *)buffer, .iov_len = (size_t)len };
    return vmsplice(pipe_out, &iov, 1, 0);
}
