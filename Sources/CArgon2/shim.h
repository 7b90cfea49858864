// The reference Argon2 library (Debian libargon2-dev), for LUKS2 keyslots (argon2i, argon2id).
#include <argon2.h>
