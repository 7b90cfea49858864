// OpenSSL's libcrypto (Debian libssl-dev): AES-XTS and AES-CBC through EVP (AES-NI/VAES), PBKDF2,
// SHA digests. Only the EVP interfaces are used.
#include <openssl/evp.h>
#include <openssl/crypto.h>
