import CZlib

/// Raw deflate through zlib. Each stream is heap-allocated once and never moves (zlib checks
/// `strm->state->strm == strm`); `deflateReset`/`inflateReset` reuse it for every block.
/// Memory: ~256 KiB for a deflate stream, ~7 KiB + 32 KiB window for an inflate stream.
final class ZlibBackend: DeflateBackend {
    var library: DeflateLibrary { .zlib }
    private var deflateStream: UnsafeMutablePointer<z_stream>?
    private var deflateLevel = -1
    private var inflateStream: UnsafeMutablePointer<z_stream>?

    deinit {
        if let deflateStream {
            CZlib.deflateEnd(deflateStream)
            deflateStream.deallocate()
        }
        if let inflateStream {
            CZlib.inflateEnd(inflateStream)
            inflateStream.deallocate()
        }
    }

    func compress(_ input: UnsafeRawBufferPointer, level: Int, into output: UnsafeMutableRawBufferPointer) -> Int? {
        guard let stream = deflater(level: level), let out = output.baseAddress else { return nil }
        // zlib accepts a null next_in when avail_in is 0.
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.pointee.avail_in = uInt(input.count)
        stream.pointee.next_out = out.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_out = uInt(output.count)
        let status = CZlib.deflate(stream, Z_FINISH)
        let produced = output.count - Int(stream.pointee.avail_out)
        CZlib.deflateReset(stream)
        return status == Z_STREAM_END ? produced : nil
    }

    func inflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Bool {
        guard let stream = inflater() else { return false }
        // zlib refuses a null next_out even for an empty output (an empty member), so point it somewhere.
        var scratch: UInt8 = 0
        return withUnsafeMutablePointer(to: &scratch) { empty in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = uInt(input.count)
            stream.pointee.next_out = output.baseAddress?.assumingMemoryBound(to: Bytef.self) ?? empty
            stream.pointee.avail_out = uInt(output.count)
            let status = CZlib.inflate(stream, Z_FINISH)
            let complete = status == Z_STREAM_END && stream.pointee.avail_out == 0
            CZlib.inflateReset(stream)
            return complete
        }
    }

    func crc32(_ bytes: UnsafeRawBufferPointer, seed: UInt32) -> UInt32 {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: Bytef.self) else { return seed }
        var crc = uLong(seed)
        var done = 0
        while done < bytes.count {
            let length = min(bytes.count - done, Int(UInt32.max))
            crc = CZlib.crc32(crc, base + done, uInt(length))
            done += length
        }
        return UInt32(truncatingIfNeeded: crc)
    }

    /// The deflate stream set to `level` (raw deflate: windowBits −15, memLevel 8), made on first use.
    private func deflater(level: Int) -> UnsafeMutablePointer<z_stream>? {
        if let deflateStream, deflateLevel == level { return deflateStream }
        if let deflateStream {
            CZlib.deflateEnd(deflateStream)
            deflateStream.deallocate()
            self.deflateStream = nil
        }
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let status = deflateInit2_(stream, Int32(level), Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY, zlibVersion(),
                                   Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            stream.deallocate()
            return nil
        }
        deflateStream = stream
        deflateLevel = level
        return stream
    }

    /// The raw inflate stream (windowBits −15), made on first use.
    private func inflater() -> UnsafeMutablePointer<z_stream>? {
        if let inflateStream { return inflateStream }
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        guard inflateInit2_(stream, -15, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            stream.deallocate()
            return nil
        }
        inflateStream = stream
        return stream
    }
}
