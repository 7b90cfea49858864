import Foundation

/// Compresses a byte stream into BGZF on an output written strictly in order with write(2) (a file, a
/// pipe, stdout), deflating blocks on several threads. Memory is fixed: 4 blocks in flight per thread,
/// ~128 KiB each, plus each thread's deflate state. Use from one thread; call `finish()` at the end.
public final class BGZFWriter {
    /// How to compress.
    public struct Options: Sendable {
        /// Deflate level 0–9; 6 is gzip's default.
        public var level: Int
        /// Compression threads; the default is the number of active cores.
        public var threads: Int
        /// Keep the member starts so `finish()` can return the `.gzi` index.
        public var recordIndex: Bool
        /// The deflate library; nil picks one with `DeflateLibrary.fromEnvironment()`.
        public var library: DeflateLibrary?

        /// Options for `bgzip`-compatible output; the writer's init checks `level` and `threads`.
        public init(level: Int = 6, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                    recordIndex: Bool = false, library: DeflateLibrary? = nil) {
            self.level = level
            self.threads = threads
            self.recordIndex = recordIndex
            self.library = library
        }
    }

    /// Blocks in flight per thread: enough that a slow write or a slow block does not stall the others.
    static let slotsPerThread = 4

    /// Where the members are written, in order.
    public let output: ImageFile
    /// The options the writer was made with.
    public let options: Options
    /// The deflate library in use.
    public let library: DeflateLibrary
    /// Bytes accepted so far.
    public private(set) var uncompressedBytes: UInt64 = 0
    /// Bytes written to `output` so far.
    public private(set) var compressedBytes: UInt64 = 0

    private let queue: BGZFCompressionQueue
    /// Blocks submitted so far; the next block to fill has this number.
    private var blocksSubmitted = 0
    /// Blocks written to `output` so far.
    private var blocksWritten = 0
    /// Bytes in the block being filled.
    private var fill = 0
    /// The uncompressed size of each block in flight, by slot.
    private var blockLengths: [Int]
    /// Uncompressed bytes in the members written so far.
    private var writtenUncompressed: UInt64 = 0
    private var index: BGZFIndex?
    private var finished = false

    /// Told the input bytes read so far (from the thread calling `write`).
    public var progress: Progress?

    /// Starts the worker threads. A level outside 0–9 or fewer than one thread is a usage error (64).
    public init(output: ImageFile, options: Options = Options()) throws {
        guard (0...9).contains(options.level) else {
            throw PlainFailure("compression level \(options.level) is outside 0–9", .usage)
        }
        guard options.threads >= 1 else {
            throw PlainFailure("\(options.threads) compression threads: need at least 1", .usage)
        }
        let library = try options.library ?? DeflateLibrary.fromEnvironment()
        try library.checkAvailable()
        self.output = output
        self.options = options
        self.library = library
        queue = BGZFCompressionQueue(threads: options.threads, slotsPerThread: Self.slotsPerThread,
                                     level: options.level, library: library)
        blockLengths = Array(repeating: 0, count: queue.slotCount)
        index = options.recordIndex ? BGZFIndex() : nil
    }

    deinit {
        queue.stop()
    }

    /// Accepts `bytes` of any size, copying them into 0xff00-byte blocks; full blocks go to the workers.
    /// Writes finished members to `output` as the ring fills, so it may block on write(2).
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(!finished, "BGZFWriter.write after finish")
        var done = 0
        while done < bytes.count {
            try makeRoomForNextBlock()
            let count = min(bgzfMaxInputPerBlock - fill, bytes.count - done)
            (queue.input(ofBlock: blocksSubmitted) + fill).copyMemory(from: bytes.baseAddress! + done, byteCount: count)
            fill += count
            done += count
            uncompressedBytes += UInt64(count)
            if fill == bgzfMaxInputPerBlock { submitBlock() }
        }
    }

    /// Compresses everything `input` holds from its start (pread(2), or read(2) from the current position
    /// when `sequential`, for pipes) until end of input, reading straight into the block buffers.
    /// Returns the number of bytes read.
    @discardableResult
    public func write(from input: ImageFile, sequential: Bool) throws -> UInt64 {
        precondition(!finished, "BGZFWriter.write after finish")
        var total: UInt64 = 0
        while true {
            try makeRoomForNextBlock()
            let space = UnsafeMutableRawBufferPointer(start: queue.input(ofBlock: blocksSubmitted) + fill,
                                                      count: bgzfMaxInputPerBlock - fill)
            let count = sequential ? try input.readSequential(into: space) : try input.read(into: space, at: total)
            if count == 0 { return total }
            fill += count
            total += UInt64(count)
            progress?.update(total)
            uncompressedBytes += UInt64(count)
            if fill == bgzfMaxInputPerBlock { submitBlock() }
        }
    }

    /// Compresses the last partial block, writes every member and the EOF member, and stops the threads.
    /// Returns the index when `options.recordIndex` is set.
    @discardableResult
    public func finish() throws -> BGZFIndex? {
        precondition(!finished, "BGZFWriter.finish called twice")
        finished = true
        if fill > 0 { submitBlock() }
        while blocksWritten < blocksSubmitted { try writeNextMember() }
        try bgzfEOFMember.withUnsafeBytes { try output.append($0) }
        compressedBytes += UInt64(bgzfEOFMember.count)
        queue.stop()
        return index
    }

    /// Ensures the block being filled has a free slot: writes out the oldest member while the ring is full.
    private func makeRoomForNextBlock() throws {
        guard fill == 0 else { return }
        while blocksSubmitted - blocksWritten >= queue.slotCount { try writeNextMember() }
    }

    private func submitBlock() {
        blockLengths[blocksSubmitted % queue.slotCount] = fill
        queue.submit(block: blocksSubmitted, length: fill)
        blocksSubmitted += 1
        fill = 0
    }

    /// Waits for the oldest block in flight and appends its member to `output` (write(2)).
    private func writeNextMember() throws {
        let block = blocksWritten
        let result = queue.waitForResult(block: block)
        if block > 0 {
            index?.entries.append(BGZFIndex.Entry(compressedOffset: compressedBytes,
                                                  uncompressedOffset: writtenUncompressed))
        }
        let size: Int
        switch result {
        case .member(let memberSize):
            size = memberSize
            try output.append(queue.member(ofBlock: block, size: memberSize))
        case .zeroMember:
            size = queue.zeroMember.count
            try queue.zeroMember.withUnsafeBytes { try output.append($0) }
        case .pending:
            preconditionFailure("waitForResult returned a pending block")
        }
        compressedBytes += UInt64(size)
        writtenUncompressed += UInt64(blockLengths[block % queue.slotCount])
        blocksWritten += 1
    }

    /// Compresses all of `input` (see `write(from:sequential:)`) into a finished BGZF stream on `output`.
    /// Returns the index when `options.recordIndex` is set.
    @discardableResult
    public static func compress(input: ImageFile, sequential: Bool, output: ImageFile,
                                options: Options = Options()) throws -> BGZFIndex? {
        let writer = try BGZFWriter(output: output, options: options)
        try writer.write(from: input, sequential: sequential)
        return try writer.finish()
    }
}
