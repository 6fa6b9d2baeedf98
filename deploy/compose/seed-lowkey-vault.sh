#!/bin/sh
# Create the demo secrets in the vault through the Key Vault REST API
# (PUT /secrets/{name}), once the vault answers.
set -eu
api="api-version=7.4"
for _ in $(seq 1 60); do
    curl -fsS --cacert /certs/ca.pem -o /dev/null -H "Authorization: Bearer $VAULT_TOKEN" \
        "$VAULT_URL/secrets?$api" && break
    sleep 1
done
put() {
    curl -fsS --cacert /certs/ca.pem -X PUT -H "Authorization: Bearer $VAULT_TOKEN" \
        -H "Content-Type: application/json" -d "{\"value\": \"$2\"}" \
        "$VAULT_URL/secrets/$1?$api" -o /dev/null
    echo "seeded $1"
}
put secret-1234 'user1:p@ssw0rd1'
put secret-4567 'user2:p@ssw0rd2'
put secret-1212 'user3:p@ssw0rd3'
