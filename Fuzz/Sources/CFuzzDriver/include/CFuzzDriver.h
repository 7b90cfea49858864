#include <stddef.h>
#include <stdint.h>
// libFuzzer's driver, called from the renamed main of the Swift executable.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
