#ifndef IMGMAP_CSUPPORT_H
#define IMGMAP_CSUPPORT_H
// Plain-C wrappers over Linux calls that Swift's Glibc module hides (they need _GNU_SOURCE).
// Each returns what the syscall returns (-1 and errno on failure).
#include <stdint.h>
#include <sys/types.h>

/// copy_file_range(2) with explicit offsets; never moves the file offsets.
int64_t imgmap_copy_file_range(int fd_in, int64_t off_in, int fd_out, int64_t off_out, uint64_t len);
/// lseek(fd, offset, SEEK_DATA): the next data offset at or after `offset`; -1/ENXIO past the last data.
int64_t imgmap_seek_data(int fd, int64_t offset);
/// lseek(fd, offset, SEEK_HOLE): the next hole at or after `offset` (end of file counts as a hole).
int64_t imgmap_seek_hole(int fd, int64_t offset);
/// fcntl(fd, F_SETPIPE_SZ, size): returns the new pipe size.
int imgmap_set_pipe_size(int fd, int size);
/// fcntl(fd, F_GETPIPE_SZ).
int imgmap_get_pipe_size(int fd);
/// BLKGETSIZE64 on a block device: its size in bytes, or -1.
int64_t imgmap_block_device_size(int fd);
/// open(path, O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, mode): a fresh file, never through a symlink.
int imgmap_open_exclusive(const char *path, unsigned int mode);
/// An unnamed regular file in `directory` (O_TMPFILE), or -1 with errno (EOPNOTSUPP, EISDIR… where the
/// filesystem has none).
int imgmap_open_anonymous(const char *directory, unsigned int mode);
/// Gives the unnamed file `fd` the name `path` (linkat through /proc/self/fd); fails with EEXIST if taken.
int imgmap_link_anonymous(int fd, const char *path);

/// splice(2) from a file at `offset` into a pipe, moving page references instead of copying bytes.
int64_t imgmap_splice_to_pipe(int fd_in, int64_t offset, int pipe_out, uint64_t len);
/// vmsplice(2) of a user buffer into a pipe: the pages are referenced, not copied, so the buffer must
/// not change afterwards (used only with a buffer of zeros that is never written).
int64_t imgmap_vmsplice(int pipe_out, const void *buffer, uint64_t len);

/// fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): the range reads as zeros and is deallocated,
/// as the loop driver does for a discard or a write-zeroes that may unmap.
int imgmap_punch_hole(int fd, int64_t offset, int64_t len);
/// fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE): the range reads as zeros and stays
/// allocated, as the loop driver does for a write-zeroes with REQ_NOUNMAP.
int imgmap_zero_range(int fd, int64_t offset, int64_t len);

/// Installs handlers for SIGINT, SIGTERM and SIGHUP (each unless already ignored, as under nohup) that
/// remove the registered temporary files and _exit(128 + signal), for every signal whose default action
/// ends the process (but the crash signals). sigaction(2): in force on return.
int imgmap_install_cleanup_handlers(void);
/// Registers `path` for removal by those handlers: a slot number, or -1 (no free slot, path too long).
int imgmap_register_temporary(const char *path);
/// Frees a slot from `imgmap_register_temporary`.
void imgmap_unregister_temporary(int slot);

#endif
