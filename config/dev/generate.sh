#!/usr/bin/env bash
# Regenerates the development material of the default config. Everything here is for
# development and tests only: a production config refuses to load files from config/dev/.
#
#   bash config/dev/generate.sh        (from the project root; needs openssl)
set -euo pipefail
cd "$(dirname "$0")"
days=3650

# The issuer's signing keys: RS256 (signs by default, as ID-porten) and ES256 (published).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out issuer-rs256.key.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out issuer-es256.key.pem

# A test CA standing in for Buypass/Commfides, and the demo client's virksomhetssertifikat.
openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days "$days" \
  -keyout test-ca.key.pem -out test-ca.cert.pem \
  -subj "/C=NO/O=Portvakt development CA/CN=Portvakt Test CA (development only)" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out demo-maskinporten.key.pem
openssl req -new -key demo-maskinporten.key.pem -out demo-maskinporten.csr \
  -subj "/C=NO/O=DEMO VIRKSOMHET AS/serialNumber=991825827/organizationIdentifier=NTRNO-991825827/CN=DEMO VIRKSOMHET AS"
openssl x509 -req -in demo-maskinporten.csr -CA test-ca.cert.pem -CAkey test-ca.key.pem \
  -CAcreateserial -days "$days" -sha256 -out demo-maskinporten.cert.pem \
  -extfile <(printf "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\n")
rm -f demo-maskinporten.csr test-ca.cert.srl

# WS-Security on the SOAP link: the simulator's certificate (Oppslagstjenesten's) and the KRR
# facade's virksomhetssertifikat, both issued by the test CA; RSA, as the real service uses.
for name in oppslag-server krr-facade; do
  case "$name" in
    oppslag-server) subject="/C=NO/O=DIGITALISERINGSDIREKTORATET TEST/serialNumber=991825827/organizationIdentifier=NTRNO-991825827/CN=Oppslagstjenesten simulator" ;;
    krr-facade) subject="/C=NO/O=PORTVAKT KRR FACADE TEST/serialNumber=910076787/organizationIdentifier=NTRNO-910076787/CN=Portvakt KRR facade" ;;
  esac
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.key.pem"
  openssl req -new -key "$name.key.pem" -out "$name.csr" -subj "$subject"
  openssl x509 -req -in "$name.csr" -CA test-ca.cert.pem -CAkey test-ca.key.pem \
    -CAcreateserial -days "$days" -sha256 -out "$name.cert.pem" \
    -extfile <(printf "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment\n")
  rm -f "$name.csr" test-ca.cert.srl
done

# Secrets of the demo deployment.
openssl rand -base64 32 > pairwise.secret
openssl rand -base64 24 | tr -d '/+=' > gateway-introspection.secret
echo "generated in $(pwd)"
