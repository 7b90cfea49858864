import Foundation

/// Inflates consecutive chunks of a BGZF file's content on worker threads, for a caller that consumes
/// them in order (`decompressImage`). Chunk `n` covers `chunkSize` bytes from `start + n × chunkSize`
/// and lives in slot `n % slotCount`. Memory: slotCount × chunkSize, fixed, plus each thread's reader
/// (128 KiB and a decompressor).
///
/// Slot buffers change hands by protocol: a worker owns slot s from its claim of chunk n until it stores
/// the result; the caller owns it from `waitForChunk(n)` until `release(n)`, after which chunk n + slotCount
/// may be claimed. Every mutable field below is guarded by `condition`.
final class BGZFInflateQueue: @unchecked Sendable {
    enum Result {
        case pending
        case filled(Int)
        case failed(any Error)
    }

    let slotCount: Int
    let chunkSize: Int
    let start: UInt64
    let end: UInt64
    private let buffers: UnsafeMutableRawPointer

    private let condition = NSCondition()
    private var results: [Result]
    /// The next chunk a worker claims.
    private var claimed = 0
    /// Chunks below this number may be claimed: the caller has released the slot's previous chunk.
    private var claimable: Int
    private var stopping = false
    private var runningWorkers = 0

    var chunkCount: Int { Int((end - start + UInt64(chunkSize) - 1) / UInt64(chunkSize)) }

    /// Starts `threads` workers, each reading through its own reader of `file` sharing `table`.
    init(file: ImageFile, table: BGZFMemberTable, library: DeflateLibrary, range: Range<UInt64>,
         threads: Int, slotsPerThread: Int, chunkSize: Int) {
        slotCount = max(2, threads * slotsPerThread)
        self.chunkSize = chunkSize
        start = range.lowerBound
        end = range.upperBound
        buffers = .allocate(byteCount: slotCount * chunkSize, alignment: 64)
        results = Array(repeating: .pending, count: slotCount)
        claimable = slotCount
        runningWorkers = threads
        for number in 0..<threads {
            let thread = Thread { [self] in
                workerLoop(reader: BGZFReader(file: file, table: table, library: library))
            }
            thread.name = "bgzf-inflate-\(number)"
            thread.start()
        }
    }

    deinit { buffers.deallocate() }

    /// Waits for chunk `chunk` and returns its bytes, valid until `release(chunk)`; rethrows a worker's error.
    func waitForChunk(_ chunk: Int) throws -> UnsafeRawBufferPointer {
        condition.lock()
        defer { condition.unlock() }
        while true {
            switch results[chunk % slotCount] {
            case .pending:
                condition.wait()
            case .filled(let count):
                return UnsafeRawBufferPointer(start: buffers + (chunk % slotCount) * chunkSize, count: count)
            case .failed(let error):
                throw error
            }
        }
    }

    /// Frees chunk `chunk`'s slot for chunk `chunk + slotCount`.
    func release(_ chunk: Int) {
        condition.lock()
        results[chunk % slotCount] = .pending
        claimable = chunk + 1 + slotCount
        condition.broadcast()
        condition.unlock()
    }

    /// Stops the workers (after their current chunk) and waits until they have exited.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while runningWorkers > 0 { condition.wait() }
        condition.unlock()
    }

    private func workerLoop(reader: BGZFReader) {
        condition.lock()
        while true {
            while !stopping && claimed < chunkCount && claimed >= claimable { condition.wait() }
            if stopping || claimed >= chunkCount { break }
            let chunk = claimed
            claimed += 1
            condition.unlock()

            let position = start + UInt64(chunk) * UInt64(chunkSize)
            let count = Int(min(UInt64(chunkSize), end - position))
            let buffer = UnsafeMutableRawBufferPointer(start: buffers + (chunk % slotCount) * chunkSize, count: count)
            let result: Result
            do {
                let got = try reader.read(into: buffer, at: position)
                result = got == count ? .filled(got)
                    : .failed(BGZFError(path: reader.file.path, "content ended at \(position + UInt64(got)), before \(end)"))
            } catch {
                result = .failed(error)
            }

            condition.lock()
            results[chunk % slotCount] = result
            condition.broadcast()
        }
        runningWorkers -= 1
        condition.broadcast()
        condition.unlock()
    }
}
