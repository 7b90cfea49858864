/// Bytes read per pread(2) while hashing: large enough to run SHA-256 at full speed, a multiple of every
/// sensible block size.
let bmapReadBufferSize = 1 << 20

/// Makes the bmap of `image`, as `bmaptool create` would on a 4 KiB-block filesystem: a block is mapped
/// when any of its bytes is data according to SEEK_DATA/SEEK_HOLE (holes are unmapped). With
/// `zerosAsHoles`, blocks whose bytes are all zero are unmapped too, so a fully written image still gets
/// a useful bmap (bmaptool has no such option; its output then differs).
///
/// Reads each mapped byte once with pread(2) into one 1 MiB buffer and hashes it with SHA-256; memory
/// is that buffer plus the text. Throws `IOFailure` on read errors and `BmapError` for an empty image.
public func createBmap(image: ImageFile, zerosAsHoles: Bool = false,
                       blockSize: UInt64 = BmapBuilder.defaultBlockSize, progress: Progress? = nil) throws -> String {
    let size = try image.byteSize()
    return try createBmap(
        size: size, path: image.path, zerosAsHoles: zerosAsHoles, blockSize: blockSize,
        dataRuns: { body in
            var offset: UInt64 = 0
            while offset < size, let data = image.nextData(from: offset), data < size {
                let hole = max(min(image.nextHole(from: data), size), data + 1)
                try body(data..<hole)
                offset = hole
            }
        },
        read: { buffer, offset in try image.readExactly(into: buffer, at: offset) }, progress: progress)
}

/// Makes a bmap from any byte source: `dataRuns` calls its argument with the data ranges in increasing
/// order (everything else is a hole), `read` fills a buffer from an offset. Mapped blocks are the data
/// ranges rounded out to whole blocks; each is read once, hashed, and (with `zerosAsHoles`) dropped
/// when all zero.
public func createBmap(size: UInt64, path: String, zerosAsHoles: Bool, blockSize: UInt64 = BmapBuilder.defaultBlockSize,
                       dataRuns: ((Range<UInt64>) throws -> Void) throws -> Void,
                       read: @escaping (UnsafeMutableRawBufferPointer, UInt64) throws -> Void,
                       progress: Progress? = nil) throws -> String {
    var builder = try BmapBuilder(imageSize: size, blockSize: blockSize, path: path)
    let bufferBytes = max(Int(blockSize), bmapReadBufferSize / Int(blockSize) * Int(blockSize))
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferBytes, alignment: 4096)
    defer { buffer.deallocate() }

    /// Feeds blocks `first...last`, whole or split at all-zero blocks.
    func feed(first: UInt64, last: UInt64) throws {
        let end = min((last + 1) * blockSize, size)
        var offset = first * blockSize
        var runOpen = false
        if !zerosAsHoles { try builder.beginRange(first: first) }
        while offset < end {
            let count = Int(min(UInt64(bufferBytes), end - offset))
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
            try read(chunk, offset)
            // Progress is the offset reached in the image: holes between runs count as done.
            progress?.update(offset + UInt64(count))
            if !zerosAsHoles {
                builder.update(UnsafeRawBufferPointer(chunk))
            } else {
                var at = 0
                while at < count {
                    let block = (offset + UInt64(at)) / blockSize
                    let blockBytes = UnsafeRawBufferPointer(rebasing: chunk[at..<min(count, at + Int(blockSize))])
                    if isAllZero(blockBytes) {
                        if runOpen { try builder.endRange(last: block - 1); runOpen = false }
                    } else {
                        if !runOpen { try builder.beginRange(first: block); runOpen = true }
                        builder.update(blockBytes)
                    }
                    at += blockBytes.count
                }
            }
            offset += UInt64(count)
        }
        if !zerosAsHoles || runOpen { try builder.endRange(last: last) }
    }

    // Round each data run out to whole blocks and merge those that touch or share a block.
    var pending: (first: UInt64, last: UInt64)?
    try dataRuns { run in
        guard run.lowerBound < run.upperBound else { return }
        let first = run.lowerBound / blockSize
        let last = (run.upperBound - 1) / blockSize
        if let p = pending, first <= p.last + 1 {
            pending = (p.first, max(p.last, last))
        } else {
            if let p = pending { try feed(first: p.first, last: p.last) }
            pending = (first, last)
        }
    }
    if let p = pending { try feed(first: p.first, last: p.last) }
    let text = try builder.finish()
    progress?.finish(size)
    return text
}
