#!/usr/bin/env bash
# A throwaway test PKI, made with the openssl CLI, for the demo and the
# end-to-end tests. Idempotent: what exists is kept.
#
#   tools/make-test-pki.sh DIR [NAME...]      (default names: a.test b.test c.test backend.test)
#
# DIR/ca.pem, ca.key            root CA (ECDSA P-256)
# DIR/intermediate.pem, .key    intermediate CA, signed by the root
# DIR/NAME.pem                  leaf for NAME (CN=NAME, SAN DNS:NAME) + intermediate, leaf first
# DIR/NAME.key                  its key, unencrypted, mode 0600
# DIR/ca-bundle.pem             the root, for clients and backend verification
# DIR/other-ca.pem, .key        an unrelated root, for negative tests
# DIR/*.srl                     serial numbers issued (openssl x509 -CAcreateserial)
set -euo pipefail
dir=${1:?usage: make-test-pki.sh DIR [NAME...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(a.test b.test c.test backend.test)
mkdir -p "$dir"
cd "$dir"
umask 077

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -f ca.pem ]; then
  newkey ca.key
  openssl req -x509 -new -key ca.key -out ca.pem -days 3650 -subj "/CN=Lodestone Test Root CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
[ -f ca-bundle.pem ] || cp ca.pem ca-bundle.pem
if [ ! -f intermediate.pem ]; then
  newkey intermediate.key
  openssl req -new -key intermediate.key -subj "/CN=Lodestone Test Intermediate CA" -out intermediate.csr 2>/dev/null
  openssl x509 -req -in intermediate.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1825 \
    -extfile <(printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n') \
    -out intermediate.pem 2>/dev/null
  rm -f intermediate.csr
fi
if [ ! -f other-ca.pem ]; then
  newkey other-ca.key
  openssl req -x509 -new -key other-ca.key -out other-ca.pem -days 3650 -subj "/CN=Unrelated Test Root CA" 2>/dev/null
fi
for n in "${names[@]}"; do
  [ -f "$n.pem" ] && [ -f "$n.key" ] && continue
  newkey "$n.key"
  openssl req -new -key "$n.key" -subj "/CN=$n" -out "$n.csr" 2>/dev/null
  openssl x509 -req -in "$n.csr" -CA intermediate.pem -CAkey intermediate.key -CAcreateserial -days 365 \
    -extfile <(printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$n") \
    -out "$n.leaf.pem" 2>/dev/null
  cat "$n.leaf.pem" intermediate.pem >"$n.pem"
  rm -f "$n.csr" "$n.leaf.pem"
done
chmod 0644 ./*.pem
echo "test PKI in $(pwd): ${names[*]}"
