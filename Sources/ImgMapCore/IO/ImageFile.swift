#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSupport
import Synchronization

/// An open file or block device read and written by absolute offset. The only place that calls
/// pread/pwrite: it retries on EINTR and short transfers, and turns errno into `IOFailure` with the path.
public final class ImageFile: @unchecked Sendable {
    /// The path as the user named it, for messages.
    public let path: String
    /// The open descriptor; the file owns it and closes it.
    public let fd: Int32
    /// Opened for reading and writing.
    public let writable: Bool
    /// Set by `close()`; the descriptor is closed on deinit otherwise.
    private var closed = false
    /// Bytes pread so far, by any thread (probe reports what the engine read of its images).
    private let readCount = Atomic<UInt64>(0)
    /// Bytes read by ``read(into:at:)`` and ``readExactly(into:at:)`` since the file was opened.
    public var bytesRead: UInt64 { readCount.load(ordering: .relaxed) }

    /// Opens `path` for reading (or reading and writing). A path that cannot be opened is `noInput` (66).
    /// With `nonBlocking` the open itself cannot hang (on a FIFO with no writer, say): for device images,
    /// which must then be regular files or block devices anyway.
    public init(openForReading path: String, writable: Bool = false, nonBlocking: Bool = false) throws(IOFailure) {
        let fd = PathCalls.open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | (nonBlocking ? O_NONBLOCK : 0))
        guard fd >= 0 else {
            let code = errno
            throw IOFailure(path: path, operation: "open", errno: code, exitStatus: writable && code == EACCES ? .cannotCreate : .noInput)
        }
        self.path = path
        self.fd = fd
        self.writable = writable
    }

    /// Opens `path` for reading where only a regular file will do (a `.gzi` index, read whole by its
    /// size): a FIFO, directory or device is `noInput` (66) at once, and the open cannot hang on a FIFO
    /// with no writer (O_NONBLOCK, which a regular file ignores).
    public convenience init(openRegularFile path: String) throws(IOFailure) {
        try self.init(openForReading: path, nonBlocking: true)
        let st = try status()
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG else {
            let what = kind == S_IFDIR ? "a directory" : kind == S_IFIFO ? "a FIFO" : kind == S_IFSOCK ? "a socket" : "a device"
            throw IOFailure(path: path, operation: "open", errno: kind == S_IFDIR ? EISDIR : EINVAL, exitStatus: .noInput,
                            hint: "it is \(what); a regular file is needed here")
        }
    }

    /// Wraps a descriptor the caller already opened (stdin, stdout, a temporary file); takes ownership
    /// unless `owned` is false.
    public init(descriptor: Int32, path: String, writable: Bool, owned: Bool = true) {
        self.path = path
        self.fd = descriptor
        self.writable = writable
        self.closed = !owned
    }

    deinit {
        if !closed { _ = Glibc.close(fd) }
    }

    /// Closes now, reporting the error close(2) may return (deferred write errors on some filesystems).
    public func close() throws(IOFailure) {
        guard !closed else { return }
        closed = true
        if Glibc.close(fd) != 0 { throw IOFailure(path: path, operation: "close", errno: errno) }
    }

    /// fstat(2) of the open descriptor.
    public func status() throws(IOFailure) -> stat {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw IOFailure(path: path, operation: "fstat", errno: errno) }
        return st
    }

    /// Size in bytes: st_size for a regular file, BLKGETSIZE64 for a block device.
    public func byteSize() throws(IOFailure) -> UInt64 {
        let st = try status()
        if (st.st_mode & S_IFMT) == S_IFBLK {
            let size = imgmap_block_device_size(fd)
            guard size >= 0 else { throw IOFailure(path: path, operation: "ioctl BLKGETSIZE64", errno: errno) }
            return UInt64(size)
        }
        return UInt64(max(0, st.st_size))
    }

    /// Reads exactly `buffer.count` bytes at `offset` with pread(2), or fewer only at end of file; returns
    /// the count read. Never moves the file offset.
    @discardableResult
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(IOFailure) -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n > 0 {
                done += n
            } else if n == 0 {
                break
            } else if errno != EINTR {
                throw IOFailure(path: path, operation: "pread at offset \(offset + UInt64(done))", errno: errno)
            }
        }
        readCount.add(UInt64(done), ordering: .relaxed)
        return done
    }

    /// Reads exactly `buffer.count` bytes at `offset`; a short file is a data error naming the offset.
    public func readExactly(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(IOFailure) {
        let n = try read(into: buffer, at: offset)
        if n < buffer.count {
            throw IOFailure(path: path, operation: "pread at offset \(offset + UInt64(n))", errno: EIO,
                            hint: "the file ended early: it was truncated while in use?")
        }
    }

    /// Writes all of `buffer` at `offset` with pwrite(2), retrying short writes and EINTR.
    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(IOFailure) {
        var done = 0
        try write(buffer, at: offset, done: &done)
    }

    /// The same, counting in `done` the bytes already written, which a failure after a short write
    /// (a file size limit, a full disk) leaves there: so a caller can say exactly what changed.
    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64, done: inout Int) throws(IOFailure) {
        done = 0
        while done < buffer.count {
            let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n >= 0 {
                done += n
            } else if errno != EINTR {
                throw IOFailure(path: path, operation: "pwrite at offset \(offset + UInt64(done))", errno: errno)
            }
        }
    }

    /// Writes all of `buffer` at the current position with write(2): for pipes and stdout.
    public func append(_ buffer: UnsafeRawBufferPointer) throws(IOFailure) {
        var done = 0
        while done < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n >= 0 {
                done += n
            } else if errno != EINTR {
                throw IOFailure(path: path, operation: "write", errno: errno)
            }
        }
    }

    /// Reads up to `buffer.count` bytes from the current position with read(2) (pipes, stdin); fills the
    /// buffer unless end of input comes first. Returns the count read; 0 only at end of input.
    public func readSequential(into buffer: UnsafeMutableRawBufferPointer) throws(IOFailure) -> Int {
        var done = 0
        while done < buffer.count {
            let n = Glibc.read(fd, buffer.baseAddress! + done, buffer.count - done)
            if n > 0 {
                done += n
            } else if n == 0 {
                break
            } else if errno != EINTR {
                throw IOFailure(path: path, operation: "read", errno: errno)
            }
        }
        return done
    }

    /// The next data at or after `offset` (SEEK_DATA), or nil when only a hole follows. On a filesystem
    /// without hole reporting the whole file reads as data.
    public func nextData(from offset: UInt64) -> UInt64? {
        let r = imgmap_seek_data(fd, Int64(offset))
        if r < 0 { return errno == ENXIO ? nil : offset }
        return UInt64(r)
    }

    /// The next hole at or after `offset` (SEEK_HOLE); end of file counts as a hole.
    public func nextHole(from offset: UInt64) -> UInt64 {
        let r = imgmap_seek_hole(fd, Int64(offset))
        return r < 0 ? UInt64.max : UInt64(r)
    }

    /// ftruncate(2): sets the size; a grown file reads as zeros without allocating blocks.
    public func truncate(to size: UInt64) throws(IOFailure) {
        guard ftruncate(fd, off_t(size)) == 0 else { throw IOFailure(path: path, operation: "ftruncate to \(size) bytes", errno: errno) }
    }

    /// fsync(2).
    public func sync() throws(IOFailure) {
        guard fsync(fd) == 0 else { throw IOFailure(path: path, operation: "fsync", errno: errno) }
    }
}
