// Certificates test_pki.h does not make, for the control plane's certificate
// tests: a self-signed server certificate (CA:FALSE), and the PKI that
// tools/make-test-pki.sh writes with the openssl CLI (so the loaders are also
// checked against certificates made the way operators make them).
#pragma once

#include <string>

#include "tests/support/test_pki.h"

namespace lode::test {

// A self-signed, non-CA certificate for `name` (CN and DNS SAN), valid for a
// day around now, with test_key(kEcdsaP256, key_slot).
TestCert make_self_signed_leaf(const std::string& name, int key_slot = 7);

// Runs tools/make-test-pki.sh DIR NAME; true when it succeeded (the script's
// output goes to stderr on failure).
bool run_make_test_pki(const std::string& dir, const std::string& name);

}  // namespace lode::test
