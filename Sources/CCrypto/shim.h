// OpenSSL's libcrypto (Debian libssl-dev): AES-XTS and AES-CBC through EVP (AES-NI/VAES), PBKDF2,
// SHA digests; and the public provider interface (provider-cipher(7)), through which the per-unit
// cipher calls reach OpenSSL's own AES implementation without EVP's per-call parameter handling.
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/provider.h>
#include <openssl/core_dispatch.h>
