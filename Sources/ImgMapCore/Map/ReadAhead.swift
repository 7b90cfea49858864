import Foundation

/// A bounded two-stage pipeline: one background thread produces chunks 0..<count in order, at most
/// `slots` chunks ahead of the calling thread, which consumes them in order. Compose uses it for
/// computed pieces, so that reading and decrypting (or rebuilding) chunk n + 1 overlaps writing chunk
/// n; without it, the output write waits for the computation and the computation for the write.
///
/// Slot `k % slots` belongs to the producer from the moment chunk k may be produced (chunk k − slots
/// was consumed) until it is produced, then to the consumer until it is consumed. Memory is what the
/// caller gives each slot; nothing is allocated per chunk. Every mutable field is guarded by
/// `condition`, whose lock also orders the producer's writes into a slot before the consumer's reads.
final class ReadAhead: @unchecked Sendable {
    private let condition = NSCondition()
    /// Chunks produced so far (the producer stops at the first failure).
    private var produced = 0
    /// Chunks consumed so far: chunk k may be produced once k < consumed + slots.
    private var consumed = 0
    private var failure: (any Error)?
    private var stopping = false
    private var finished = false
    /// The producer's work, dropped before `run` returns (the Thread object may outlive the call, and
    /// must not keep the caller's closure).
    private var work: Work?

    /// Unchecked: the closures run on the producer thread only while `run` waits for it.
    private struct Work: @unchecked Sendable {
        let produce: (_ chunk: Int, _ slot: Int) throws -> Void
    }

    /// Calls `produce(k, k % slots)` on a background thread and `consume(k, k % slots)` on this one,
    /// for every k in order. The first error either side throws stops both and is rethrown here, after
    /// the chunks before a failed `produce` were consumed (as a serial loop would have). Returns only
    /// after the producer thread has finished, so the closures never outlive the call.
    static func run(count: Int, slots: Int, produce: (_ chunk: Int, _ slot: Int) throws -> Void,
                    consume: (_ chunk: Int, _ slot: Int) throws -> Void) throws {
        precondition(slots >= 1)
        let queue = ReadAhead()
        try withoutActuallyEscaping(produce) { produce in
            queue.work = Work(produce: produce)
            let thread = Thread { queue.producerLoop(count: count, slots: slots) }
            thread.name = "imgmap-read-ahead"
            thread.start()
            defer { queue.stopAndWait() }
            try queue.consumerLoop(count: count, slots: slots, consume: consume)
        }
    }

    private func producerLoop(count: Int, slots: Int) {
        for chunk in 0..<count {
            condition.lock()
            while !stopping && chunk >= consumed + slots { condition.wait() }
            let stop = stopping
            condition.unlock()
            if stop { break }
            do {
                // Read at each call, never kept in a local: the closure must have no reference left
                // on this thread once `finished` is set.
                try produceChunk(chunk, chunk % slots)
            } catch {
                condition.lock()
                failure = error
                condition.broadcast()
                condition.unlock()
                break
            }
            condition.lock()
            produced = chunk + 1
            condition.broadcast()
            condition.unlock()
        }
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    /// `work` is set before the thread starts and cleared only after it has finished.
    private func produceChunk(_ chunk: Int, _ slot: Int) throws {
        try work!.produce(chunk, slot)
    }

    private func consumerLoop(count: Int, slots: Int, consume: (Int, Int) throws -> Void) throws {
        for chunk in 0..<count {
            condition.lock()
            while produced <= chunk && failure == nil { condition.wait() }
            // The producer works in order and stops at its first failure: a chunk not produced by
            // then is the one that failed.
            let error = produced <= chunk ? failure : nil
            condition.unlock()
            if let error { throw error }
            try consume(chunk, chunk % slots)
            condition.lock()
            consumed = chunk + 1
            condition.broadcast()
            condition.unlock()
        }
    }

    private func stopAndWait() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
        work = nil
        condition.unlock()
    }
}
