/// The target types imgmap knows, by name (the kernel's `__find_target_type`). Names are
/// case-sensitive: `Linear` is an unknown target type, as in the kernel.
public enum TargetRegistry {
    /// Every built-in target type. A program with its own targets sets the loader's
    /// ``TableLoader/targets`` to `TargetRegistry.all + [MyTarget.self]`; when two types share a name,
    /// the first in the list is the one tables get.
    public static let all: [any Target.Type] = [
        LinearTarget.self, StripedTarget.self, ZeroTarget.self, ErrorTarget.self, CompressTarget.self,
        SnapshotOriginTarget.self, SnapshotTarget.self, SnapshotMergeTarget.self, ThinPoolTarget.self, ThinTarget.self, CacheTarget.self,
        CryptTarget.self,
        RaidTarget.self, MDRaidTarget.self, MirrorTarget.self, MultipathTarget.self,
        VerityTarget.self,
    ]
}
