"""Read one secret from the test vault with the official Python client.

Proves the test vault speaks the real Key Vault protocol: the SDK's challenge
authentication, paths, api-version and JSON. Exit 3 when the package is missing.

usage: python_client.py VAULT_URL CA_PEM TOKEN SECRET_NAME
"""
import sys
import time

try:
    from azure.core.credentials import AccessToken
    from azure.keyvault.secrets import SecretClient
except ImportError:
    sys.exit(3)


class StaticToken:
    """A credential that hands out a fixed token, like keypin's static_token."""

    def __init__(self, token):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self.token, int(time.time()) + 3600)


def main():
    url, ca, token, name = sys.argv[1:5]
    client = SecretClient(url, StaticToken(token), verify_challenge_resource=False, connection_verify=ca)
    print(client.get_secret(name).value)


if __name__ == "__main__":
    main()
