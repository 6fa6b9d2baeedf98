#!/bin/sh
# Create the compose CA, the vault's keystore and keypin's certificate in /certs.
# Idempotent: existing files are kept.
set -eu
cd /certs
[ -s ca.pem ] && [ -s vault.p12 ] && [ -s keypin.pem ] && exit 0
apk add --no-cache openssl >/dev/null

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
    -subj "/CN=keypin compose CA" -keyout ca-key.pem -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

issue() { # name san...
    name=$1; shift
    san=$(printf 'DNS:%s,' "$@"); san=${san%,}
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$1" \
        -keyout "$name-key.pem" -out "$name.csr"
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 825 \
        -extfile "$name.ext" -out "$name.pem"
}
issue vault lowkey-vault localhost
issue keypin localhost keypin
openssl pkcs12 -export -in vault.pem -inkey vault-key.pem -certfile ca.pem \
    -name lowkey-vault -passout pass:lowkey-compose -out vault.p12
# keypin and the emulator run as other users; these are throwaway demo keys.
chmod 644 vault.p12 keypin-key.pem
rm -f ca-key.pem ./*.csr ./*.ext ./*.srl vault-key.pem
