#!/usr/bin/env bash
# Regenerates the TLS test certificates described in README.md (OpenSSL 3). They are valid
# for 100 years, so this only runs when the set changes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500 \
    -keyout "$tmp/ca.key" -out ca.pem -subj "/CN=d2o test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

leaf() { # name common-name serial
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$tmp/$1.key" -out "$tmp/$1.csr" -subj "/CN=$2"
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n' > "$tmp/$1.ext"
    openssl x509 -req -in "$tmp/$1.csr" -CA ca.pem -CAkey "$tmp/ca.key" -set_serial "$3" \
        -days 36500 -extfile "$tmp/$1.ext" -out "$1.pem"
}
leaf server-a "d2o test server A" 10
leaf server-b "d2o test server B" 11
openssl pkcs8 -topk8 -nocrypt -in "$tmp/server-a.key" -out server-a.key          # PKCS#8
openssl ec -in "$tmp/server-b.key" -out server-b.key                              # SEC1
openssl pkcs8 -topk8 -v2 aes-256-cbc -passout pass:secret -in "$tmp/server-a.key" -out server-a-encrypted.key
