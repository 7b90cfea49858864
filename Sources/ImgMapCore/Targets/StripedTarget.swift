/// The `striped` target: the segment spread over several devices in chunks of a fixed number of sectors.
///
/// Spreads the segment over the stripes in chunks (dm-stripe.c): chunk c of the segment goes to stripe
/// c mod #stripes, at chunk c div #stripes of that stripe's area. Any chunk size ≥ 1 is valid, power of
/// two or not. The constructor's checks, in the kernel's order: argument count, stripe count, chunk size,
/// length divisible by the stripe count, then by the chunk size, then exactly 2 + 2 × #stripes arguments,
/// then each destination.
///
/// Table arguments:
///
/// ```
/// striped <#stripes> <chunk_sectors> (<device> <offset>){#stripes}
/// ```
public struct StripedTarget: Target {
    public static let name = "striped"

    package struct Stripe: Sendable {
        package let device: Device
        package let token: String
        package let offset: UInt64
    }

    package let stripes: [Stripe]
    package let chunk: UInt64
    /// Sectors each stripe holds: length / #stripes.
    let width: UInt64

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        guard arguments.count >= 2 else {
            throw TargetError("Not enough arguments", detail: "striped needs <#stripes> <chunk_sectors> and a device and offset per stripe")
        }
        guard let count = KernelNumber.unsigned32(arguments[0]), count > 0 else {
            throw TargetError("Invalid stripe count", detail: "`\(arguments[0])`: a decimal number from 1 to 4294967295")
        }
        guard let chunk = KernelNumber.unsigned32(arguments[1]), chunk > 0 else {
            throw TargetError("Invalid chunk_size", detail: "`\(arguments[1])`: a decimal number of sectors from 1 to 4294967295")
        }
        let stripes = UInt64(count)
        guard length.value % stripes == 0 else {
            throw TargetError("Target length not divisible by number of stripes",
                              detail: "\(length.value) sectors over \(stripes) stripes")
        }
        let width = length.value / stripes
        guard width % UInt64(chunk) == 0 else {
            throw TargetError("Target length not divisible by chunk size",
                              detail: "each of the \(stripes) stripes holds \(width) sectors, not a multiple of \(chunk)")
        }
        guard UInt64(arguments.count) == 2 + 2 * stripes else {
            throw TargetError("Not enough destinations specified",
                              detail: "\(stripes) stripes need \(2 * stripes) device and offset arguments, got \(arguments.count - 2)")
        }
        var parsed: [Stripe] = []
        parsed.reserveCapacity(Int(stripes))
        for k in 0..<Int(stripes) {
            let token = arguments[2 + 2 * k]
            let offsetText = arguments[3 + 2 * k]
            guard let offset = KernelNumber.sector(offsetText) else {
                throw TargetError("Couldn't parse stripe destination",
                                  detail: "stripe \(k): `\(offsetText)` is not a decimal sector number")
            }
            let device: Device
            do {
                device = try context.device(token)
            } catch {
                throw TargetError("Couldn't parse stripe destination", detail: "stripe \(k): \(error.message)"
                                    + (error.detail.map { ": \($0)" } ?? ""), hint: error.hint, exitStatus: error.exitStatus)
            }
            parsed.append(Stripe(device: device, token: token, offset: offset))
        }
        self.stripes = parsed
        self.chunk = UInt64(chunk)
        self.width = width
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        for stripe in stripes {
            try body(DeviceArea(device: stripe.device, token: stripe.token, start: stripe.offset, length: width))
        }
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        let n = UInt64(stripes.count)
        var x = offset
        var left = count
        while left > 0 {
            let chunkIndex = x / chunk
            let inner = x % chunk
            let stripe = stripes[Int(chunkIndex % n)]
            let piece = min(left, chunk - inner)
            let sector = (chunkIndex / n) * chunk + inner
            try body(.device(stripe.device, token: stripe.token, sector: stripe.offset &+ sector, count: piece))
            x += piece
            left -= piece
        }
    }

    public var tableArguments: String {
        "\(stripes.count) \(chunk) " + stripes.map { "\($0.token) \($0.offset)" }.joined(separator: " ")
    }
}
