#!/usr/bin/env bash
# The OCSP / CRL test PKI, in the shape of the wolfSSL stapling article: a
# root CA, an intermediate CA, one OCSP responder-signing certificate per CA,
# a valid (serial 7), a revoked (serial 8) and a must-staple (serial 9) server
# certificate, the `openssl ca` databases an `openssl ocsp` responder reads,
# and the intermediate's CRL. openssl CLI only; ECDSA P-256 keys.
#
#   tools/make-ocsp-pki.sh DIR
#   OCSP_PORT (22220)       the intermediate's responder: AIA OCSP of the leaves
#   CRL_PORT (22221)        the leaves' CRL distribution point host
#   ROOT_OCSP_PORT (22222)  the root's responder: AIA OCSP of the intermediate
#
# The ports are baked into the certificates, so DIR/ports records them and is
# written last: the script does nothing when DIR/ports matches, and rebuilds
# every file below when it is missing (a run that was interrupted) or differs.
#
# DIR/ports                          "OCSP_PORT=.. CRL_PORT=.. ROOT_OCSP_PORT=.."
# DIR/ca.pem, ca.key                 root CA (self-signed, CN=Lodestone OCSP Test Root CA)
# DIR/intermediate.pem, .key         intermediate CA, signed by the root;
#                                    AIA OCSP http://127.0.0.1:ROOT_OCSP_PORT
# DIR/ocsp-responder.pem, .key       the intermediate's delegated responder
#                                    (EKU OCSPSigning, ocsp-nocheck, signed by the intermediate)
# DIR/root-ocsp-responder.pem, .key  the root's delegated responder (signed by the root)
# DIR/NAME.pem                       leaf then intermediate, for
#                                      ocsp-good.test       serial 7, valid
#                                      ocsp-revoked.test    serial 8, revoked (keyCompromise)
#                                      ocsp-muststaple.test serial 9, valid, tlsfeature=status_request
#                                    each with SAN DNS:NAME, AIA OCSP
#                                    http://127.0.0.1:OCSP_PORT and CRL distribution point
#                                    http://127.0.0.1:CRL_PORT/intermediate.crl
# DIR/NAME.key                       its key, mode 0600
# DIR/index.txt                      the intermediate's database: 07 V, 08 R, 09 V
# DIR/root-index.txt                 the root's database: the intermediate, V
# DIR/intermediate.crl, .crl.pem     the intermediate's CRL (DER, PEM), listing serial 8
# DIR/intermediate-ca.cnf, root-ca.cnf  the `openssl ca` configurations
# DIR/*-serial, crlnumber, *.attr, newcerts/, signers-*  `openssl ca` bookkeeping
#                                    (responder certificates and the root's own
#                                    self-signature are kept out of index.txt and
#                                    root-index.txt, in signers-*-index.txt)
#
# Every certificate and the CRL are backdated by one day, so a test may check
# them at a time somewhat before "now".
#
# A responder for the leaves, as in the article:
#   openssl ocsp -index DIR/index.txt -port OCSP_PORT -rsigner DIR/ocsp-responder.pem \
#     -rkey DIR/ocsp-responder.key -CA DIR/intermediate.pem -ndays 1
set -euo pipefail
dir=${1:?usage: make-ocsp-pki.sh DIR}
ocsp_port=${OCSP_PORT:-22220}
crl_port=${CRL_PORT:-22221}
root_ocsp_port=${ROOT_OCSP_PORT:-22222}
ports="OCSP_PORT=$ocsp_port CRL_PORT=$crl_port ROOT_OCSP_PORT=$root_ocsp_port"
leaves=(ocsp-good.test ocsp-revoked.test ocsp-muststaple.test)

mkdir -p "$dir"
cd "$dir"
if [ -f ports ] && [ "$(cat ports)" = "$ports" ]; then
  echo "OCSP test PKI in $(pwd) is up to date ($ports)"
  exit 0
fi

# Start over: only the files this script makes, never anything else in DIR.
rm -f ports ca.pem ca.key intermediate.pem intermediate.key intermediate.csr \
  ocsp-responder.pem ocsp-responder.key ocsp-responder.csr \
  root-ocsp-responder.pem root-ocsp-responder.key root-ocsp-responder.csr ca.csr \
  index.txt index.txt.attr index.txt.old index.txt.attr.old \
  root-index.txt root-index.txt.attr root-index.txt.old root-index.txt.attr.old \
  signers-index.txt signers-index.txt.attr signers-index.txt.old signers-index.txt.attr.old \
  signers-root-index.txt signers-root-index.txt.attr signers-root-index.txt.old \
  signers-root-index.txt.attr.old \
  intermediate-serial intermediate-serial.old root-serial root-serial.old \
  signers-intermediate-serial signers-intermediate-serial.old signers-root-serial signers-root-serial.old \
  crlnumber crlnumber.old intermediate.crl intermediate.crl.pem \
  intermediate-ca.cnf root-ca.cnf ext.cnf
for n in "${leaves[@]}"; do rm -f "$n.pem" "$n.key" "$n.csr" "$n.leaf.pem"; done
rm -rf newcerts
mkdir -p newcerts
umask 077

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
start=$(date -u -d '1 day ago' +%y%m%d%H%M%SZ)
crl_last=$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)
crl_next=$(date -u -d '30 days' +%Y%m%d%H%M%SZ)

# One `openssl ca` configuration per CA: CA_default issues what goes into the
# responder's index; CA_signers issues the responder certificates (and, for the
# root, its own self-signature) from a separate database.
ca_config() {  # NAME CERT KEY DB SERIAL
  cat <<EOF
[ ca ]
default_ca = CA_default
[ CA_default ]
database = $4
serial = $5
new_certs_dir = newcerts
certificate = $2
private_key = $3
crlnumber = crlnumber
default_md = sha256
default_days = 365
default_crl_days = 30
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none
[ CA_signers ]
database = signers-$4
serial = signers-$5
new_certs_dir = newcerts
certificate = $2
private_key = $3
default_md = sha256
default_days = 365
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none
[ policy_any ]
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = $1
EOF
}
ca_config "Lodestone OCSP Test Root CA" ca.pem ca.key root-index.txt root-serial >root-ca.cnf
ca_config "Lodestone OCSP Test Intermediate CA" intermediate.pem intermediate.key index.txt \
  intermediate-serial >intermediate-ca.cnf
: >root-index.txt
: >signers-root-index.txt
: >index.txt
: >signers-index.txt
echo 01 >root-serial
echo 1000 >signers-root-serial
echo 07 >intermediate-serial
echo 2000 >signers-intermediate-serial
echo 01 >crlnumber
export LEAF_NAME=unused  # ext.cnf's leaf sections read it; every section is parsed

sign() {  # CONFIG SECTION CSR OUT EXTSECTION [extra ca args...]
  local cnf=$1 section=$2 csr=$3 out=$4 ext=$5
  shift 5
  openssl ca -batch -notext -config "$cnf" -name "$section" -startdate "$start" -days 365 \
    -extfile ext.cnf -extensions "$ext" -in "$csr" -out "$out" "$@" 2>/dev/null
}
csr() {  # KEY CN OUT
  openssl req -new -key "$1" -subj "/CN=$2" -out "$3" 2>/dev/null
}

cat >ext.cnf <<EOF
[ root ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ intermediate ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:http://127.0.0.1:$root_ocsp_port
[ responder ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = OCSPSigning
noCheck = ignored
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ leaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:\${ENV::LEAF_NAME}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:http://127.0.0.1:$ocsp_port
crlDistributionPoints = URI:http://127.0.0.1:$crl_port/intermediate.crl
[ leaf_muststaple ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:\${ENV::LEAF_NAME}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:http://127.0.0.1:$ocsp_port
crlDistributionPoints = URI:http://127.0.0.1:$crl_port/intermediate.crl
tlsfeature = status_request
EOF

# Root CA (self-signed through `ca -selfsign`, so it can be backdated).
newkey ca.key
openssl req -new -key ca.key -config root-ca.cnf -out ca.csr 2>/dev/null
sign root-ca.cnf CA_signers ca.csr ca.pem root -selfsign -keyfile ca.key -days 3650

# Intermediate CA, recorded in the root's index.
newkey intermediate.key
csr intermediate.key "Lodestone OCSP Test Intermediate CA" intermediate.csr
sign root-ca.cnf CA_default intermediate.csr intermediate.pem intermediate -days 1825

# Delegated responders.
newkey ocsp-responder.key
csr ocsp-responder.key "Lodestone OCSP Test Intermediate Responder" ocsp-responder.csr
sign intermediate-ca.cnf CA_signers ocsp-responder.csr ocsp-responder.pem responder
newkey root-ocsp-responder.key
csr root-ocsp-responder.key "Lodestone OCSP Test Root Responder" root-ocsp-responder.csr
sign root-ca.cnf CA_signers root-ocsp-responder.csr root-ocsp-responder.pem responder

# Leaves: serials 7, 8, 9 in that order (intermediate-serial starts at 07).
for n in "${leaves[@]}"; do
  newkey "$n.key"
  csr "$n.key" "$n" "$n.csr"
  ext=leaf
  [ "$n" = ocsp-muststaple.test ] && ext=leaf_muststaple
  LEAF_NAME=$n sign intermediate-ca.cnf CA_default "$n.csr" "$n.leaf.pem" "$ext"
  cat "$n.leaf.pem" intermediate.pem >"$n.pem"
done
openssl ca -batch -config intermediate-ca.cnf -revoke ocsp-revoked.test.leaf.pem \
  -crl_reason keyCompromise 2>/dev/null
openssl ca -batch -config intermediate-ca.cnf -gencrl -crl_lastupdate "$crl_last" \
  -crl_nextupdate "$crl_next" -out intermediate.crl.pem 2>/dev/null
openssl crl -in intermediate.crl.pem -outform DER -out intermediate.crl

rm -f ./*.csr ./*.leaf.pem ext.cnf
chmod 0600 ./*.key
chmod 0644 ./*.pem intermediate.crl ./*index.txt ./*.cnf
echo "$ports" >ports
chmod 0644 ports
echo "OCSP test PKI in $(pwd) ($ports)"
