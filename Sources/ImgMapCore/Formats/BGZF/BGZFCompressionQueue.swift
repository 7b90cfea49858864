import Foundation

/// The ring of blocks a `BGZFWriter` shares with its worker threads. Block number `n` lives in slot
/// `n % slotCount`; the caller fills slots and writes members out in block order, workers compress
/// whichever submitted block is next. Memory: slotCount × (0xff00 input + 64 KiB output), fixed.
///
/// Ownership of a slot's buffers passes by protocol, not by lock: the caller owns slot s from the
/// moment it takes block s − slotCount's result until it calls `submit`; a worker owns it from the
/// claim in `workerLoop` until it stores the result; the caller reads the output after `waitForResult`.
/// Every mutable field below is guarded by `condition`.
final class BGZFCompressionQueue: @unchecked Sendable {
    enum Result: Equatable {
        case pending
        /// A member of this many bytes sits at the start of the slot's output buffer.
        case member(Int)
        /// The block was `bgzfMaxInputPerBlock` zeros: write `zeroMember`.
        case zeroMember
    }

    let slotCount: Int
    let encoder: BGZFMemberEncoder
    let library: DeflateLibrary
    let zeroMember: [UInt8]
    private let inputs: UnsafeMutableRawPointer
    private let outputs: UnsafeMutableRawPointer

    private let condition = NSCondition()
    private var inputLengths: [Int]
    private var results: [Result]
    /// Blocks numbered below this are submitted.
    private var submitted = 0
    /// The next block a worker claims.
    private var claimed = 0
    /// Set when no more blocks will come; workers exit once every submitted block is claimed.
    private var stopping = false
    private var runningWorkers = 0

    /// Allocates the ring, fetches the zero-block member and starts `threads` worker threads.
    init(threads: Int, slotsPerThread: Int, level: Int, library: DeflateLibrary) {
        slotCount = max(2, threads * slotsPerThread)
        encoder = BGZFMemberEncoder(level: level)
        self.library = library
        zeroMember = BGZFZeroMemberCache.shared.member(level: level, library: library)
        inputs = .allocate(byteCount: slotCount * bgzfMaxInputPerBlock, alignment: 64)
        outputs = .allocate(byteCount: slotCount * bgzfMaxMemberSize, alignment: 64)
        inputLengths = Array(repeating: 0, count: slotCount)
        results = Array(repeating: .pending, count: slotCount)
        runningWorkers = threads
        for number in 0..<threads {
            let thread = Thread { [self] in workerLoop() }
            thread.name = "bgzf-deflate-\(number)"
            thread.start()
        }
    }

    deinit {
        inputs.deallocate()
        outputs.deallocate()
    }

    /// The input buffer of `block`'s slot; the caller may write it until `submit`.
    func input(ofBlock block: Int) -> UnsafeMutableRawPointer {
        inputs + (block % slotCount) * bgzfMaxInputPerBlock
    }

    /// The member bytes of a block whose result was `.member(size)`, valid until the slot is reused.
    func member(ofBlock block: Int, size: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: outputs + (block % slotCount) * bgzfMaxMemberSize, count: size)
    }

    /// Hands block `block` (which must be the next number) of `length` bytes to the workers.
    func submit(block: Int, length: Int) {
        condition.lock()
        precondition(block == submitted)
        inputLengths[block % slotCount] = length
        submitted += 1
        condition.signal()
        condition.unlock()
    }

    /// Blocks until `block` is compressed and frees its slot result for reuse.
    func waitForResult(block: Int) -> Result {
        condition.lock()
        defer { condition.unlock() }
        while results[block % slotCount] == .pending { condition.wait() }
        let result = results[block % slotCount]
        results[block % slotCount] = .pending
        return result
    }

    /// Tells workers no more blocks come, and waits until they have exited.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while runningWorkers > 0 { condition.wait() }
        condition.unlock()
    }

    /// One worker thread: claims blocks in order, compresses each with its own backend.
    private func workerLoop() {
        let backend = library.makeBackend()
        condition.lock()
        while true {
            while claimed == submitted && !stopping { condition.wait() }
            if claimed == submitted { break }
            let block = claimed
            claimed += 1
            let slot = block % slotCount
            let length = inputLengths[slot]
            condition.unlock()

            let input = UnsafeRawBufferPointer(start: inputs + slot * bgzfMaxInputPerBlock, count: length)
            let result: Result
            if length == bgzfMaxInputPerBlock && isAllZero(input) {
                result = .zeroMember
            } else {
                let output = UnsafeMutableRawBufferPointer(start: outputs + slot * bgzfMaxMemberSize, count: bgzfMaxMemberSize)
                result = .member(encoder.encode(input, into: output, backend: backend))
            }

            condition.lock()
            results[slot] = result
            condition.broadcast()
        }
        runningWorkers -= 1
        condition.broadcast()
        condition.unlock()
    }
}
