# Shared by the md guest scripts (passed as --guest-file md-lib.sh, sourced after lib.sh): the marks
# each array gets (the pattern at its start, its tag at sector 1024, the pattern again 256 KiB before
# its end) and `make`, which creates an array, waits for its sync, marks it and records what the
# kernel presents.
mark() {   # mark MD TAG
    dd if="$INPUTS/pattern.bin" of="$1" bs=64k conv=fsync 2>/dev/null
    echo "array $2" | dd of="$1" bs=512 seek=1024 conv=sync,fsync 2>/dev/null
    end=$(( $(blockdev --getsize64 "$1") / 65536 - 4 ))
    dd if="$INPUTS/pattern.bin" of="$1" bs=64k seek=$end conv=fsync 2>/dev/null
}
make() {   # make MD TAG OPTIONS... MEMBERS...
    md=$1 tag=$2; shift 2
    echo "+ mdadm --create $md --run $*"
    mdadm --create "$md" --run "$@"
    md_settle "$md"
    mark "$md" "$tag"
    md_settle "$md"
    volsum "$md" "$tag"
    mdadm --detail "$md" > "$RESULTS/$tag-detail.txt"
}
