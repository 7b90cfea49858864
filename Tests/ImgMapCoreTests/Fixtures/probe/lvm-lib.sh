# Shared by the LVM guest scripts (passed as --guest-file lvm-lib.sh, sourced after lib.sh): the marks
# each LV gets (the pattern at its start, its tag at sector 600, the pattern again 256 KiB before its
# end).
mark() {
    dd if="$INPUTS/pattern.bin" of="$1" bs=64k conv=fsync 2>/dev/null
    echo "volume $2" | dd of="$1" bs=512 seek=600 conv=sync,fsync 2>/dev/null
    end=$(( $(blockdev --getsize64 "$1") / 65536 - 4 ))
    dd if="$INPUTS/pattern.bin" of="$1" bs=64k seek=$end conv=fsync 2>/dev/null
}
