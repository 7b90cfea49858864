import Foundation

/// Byte counts of one compression or decompression run.
public struct BGZFTransferSummary: Equatable, Sendable {
    /// Bytes of uncompressed data read or written.
    public var uncompressedBytes: UInt64
    /// Size in bytes of the BGZF file written, or of the one read from (the whole file, EOF member included).
    public var compressedBytes: UInt64
}

/// Compresses all of `input` into BGZF on `output`, written in order with write(2) so it may be a pipe.
/// A regular file or block device is read with pread(2) from offset 0; anything else (a pipe, stdin)
/// with read(2) until end of input. When `index` is given, the `.gzi` index is written to it afterwards.
/// Threads deflate in parallel; memory stays under ~1 MiB per thread.
@discardableResult
public func compressImage(input: ImageFile, output: ImageFile, level: Int = 6,
                          threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                          index: ImageFile? = nil) throws -> BGZFTransferSummary {
    let kind = try input.status().st_mode & S_IFMT
    let sequential = kind != S_IFREG && kind != S_IFBLK
    let writer = try BGZFWriter(output: output,
                                options: BGZFWriter.Options(level: level, threads: threads, recordIndex: index != nil))
    try writer.write(from: input, sequential: sequential)
    let members = try writer.finish()
    if let index, let members { try members.write(to: index) }
    return BGZFTransferSummary(uncompressedBytes: writer.uncompressedBytes, compressedBytes: writer.compressedBytes)
}

/// Writes the uncompressed content of the BGZF file `input` to `output` in order with write(2): all of
/// it, or `length` bytes from `offset`. A range past the end is a usage error (64) naming the size.
/// Uses `input`'s `.gzi` when present; `threads` inflate 1 MiB chunks in parallel (each member read
/// once with pread(2), twice where a chunk boundary cuts it); memory ~8 MiB per thread. `progress` is
/// given the byte count to write and may return a display to update.
@discardableResult
public func decompressImage(input: ImageFile, output: ImageFile, offset: UInt64 = 0, length: UInt64? = nil,
                            threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                            progress makeProgress: ((_ total: UInt64) -> Progress?)? = nil) throws -> BGZFTransferSummary {
    let reader = try BGZFReader(file: input)
    let size = reader.uncompressedSize
    guard offset <= size, (length ?? 0) <= size - offset else {
        throw PlainFailure("\(input.path): range \(offset)+\(length ?? 0) is beyond the uncompressed size (\(size) bytes)", .usage)
    }
    let end = offset + (length ?? (size - offset))
    let queue = BGZFInflateQueue(file: input, table: reader.table, library: reader.library, range: offset..<end,
                                 threads: max(1, threads), slotsPerThread: 8, chunkSize: 16 * bgzfMaxInputPerBlock)
    defer { queue.stop() }
    // Made once the size to write is known (from the member table).
    let progress = makeProgress?(end - offset)
    var written: UInt64 = 0
    for chunk in 0..<queue.chunkCount {
        let bytes = try queue.waitForChunk(chunk)
        try output.append(bytes)
        written += UInt64(bytes.count)
        queue.release(chunk)
        progress?.update(written)
    }
    progress?.finish(written)
    return BGZFTransferSummary(uncompressedBytes: end - offset, compressedBytes: try input.byteSize())
}
