/// The `snapshot-origin` target: reads pass to the origin; a write first copies the old chunks into every snapshot's COW.
///
/// The origin of snapshots (dm-snap.c `origin_ctr`): reads pass to the origin device unchanged, by the
/// absolute sector of the mapped device (origin_map never subtracts the segment start); the device check
/// covers sectors 0..<length, as origin_iterate_devices asks. A write first copies each old chunk into
/// the COW of every snapshot of this origin in the same set of tables (Formats/Snapshot/SnapshotState).
///
/// Table arguments:
///
/// ```
/// snapshot-origin <origin>
/// ```
public struct SnapshotOriginTarget: Target {
    public static let name = "snapshot-origin"

    package let origin: Device
    package let token: String
    let start: UInt64
    let length: UInt64
    /// Where to find the snapshots of this origin when writing.
    let snapshots: SnapshotRegistry

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        guard arguments.count == 1 else {
            throw TargetError("origin: incorrect number of arguments", detail: "snapshot-origin takes 1 argument (<origin>), got \(arguments.count)")
        }
        token = arguments[0]
        do {
            origin = try context.device(token)
        } catch {
            throw TargetError("Cannot get target device", detail: error.detail ?? error.message, hint: error.hint, exitStatus: error.exitStatus)
        }
        start = context.start.value
        self.length = length.value
        snapshots = context.snapshots
    }

    public var devicesWrittenOnWrite: [Device] { snapshots.snapshots(of: origin).map(\.cow) }

    public func checkWrite(offset: UInt64, count: UInt64) throws {
        for snapshot in snapshots.snapshots(of: origin) {
            let (from, n) = clipped(snapshot, offset: offset, count: count)
            try snapshot.checkRoom(start: from, count: n, who: "snapshot of \(token) (COW \(snapshot.cow.displayName))")
        }
    }

    /// __origin_write: each snapshot of this origin first gets the old content of every chunk written
    /// that it has no exception for (none past the snapshot's end, none in a merging one).
    public func prepareWrite(offset: UInt64, count: UInt64, io: WriteIO) throws {
        for snapshot in snapshots.snapshots(of: origin) {
            let (from, n) = clipped(snapshot, offset: offset, count: count)
            try snapshot.allocate(start: from, count: n, fullChunksNeedNoCopy: false, io: io)
        }
    }

    /// The part of the write that lies before the snapshot's end.
    func clipped(_ snapshot: SnapshotState, offset: UInt64, count: UInt64) -> (UInt64, UInt64) {
        let from = start &+ offset
        return (from, from >= snapshot.end ? 0 : min(count, snapshot.end - from))
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        try body(DeviceArea(device: origin, token: token, start: 0, length: length))
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        try SnapshotTarget.emit(origin, token: token, sector: start &+ offset, count: count, body)
    }

    public var tableArguments: String { token }
}
