#!/usr/bin/env bash
# Throw-away certificates for examples/mtls/gateway.yaml, made with openssl into the
# directory given (default: this script's directory):
#   ca.pem / ca.key            the client CA (also signs the gateway's server certificate)
#   server.pem / server.key    the gateway's certificate for localhost / 127.0.0.1
#   alice.pem / alice.key      a client certificate (CN=alice, O=Contoso, clientAuth)
#   mallory.pem / mallory.key  a client certificate of another CA
set -euo pipefail
out="${1:-$(dirname "$0")}"
mkdir -p "$out"
cd "$out"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 30 -subj "/CN=example clients CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -x509 "${ec[@]}" -keyout other-ca.key -out other-ca.pem -days 30 -subj "/CN=other CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
issue() {   # name subject extensions ca
    openssl req "${ec[@]}" -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    printf '%b' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$4.pem" -CAkey "$4.key" -set_serial "0x$(openssl rand -hex 8)" \
        -days 7 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
issue server "/CN=localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth" ca
issue alice "/O=Contoso/CN=alice" "subjectAltName=DNS:alice.example\nextendedKeyUsage=clientAuth" ca
issue mallory "/CN=mallory" "extendedKeyUsage=clientAuth" other-ca
echo "certificates in $out"
