"""A system reads a patient's record from the gateway the way any SMART backend services
client would, with a standard SMART client library from PyPI (`fhirclient`, the SMART on FHIR
project's Python client) and a standard JWT library (`PyJWT`) for the client assertion:

1. discovery: `fhirclient` reads the CapabilityStatement's SMART security extension and takes
   the token endpoint from it; the SMART configuration at `.well-known/smart-configuration`
   must name the same endpoint and offer what is used (client credentials, private_key_jwt,
   the key's algorithm);
2. authorisation: `fhirclient` asks that token endpoint for a token with
   grant_type=client_credentials and the signed client assertion (naming the end user the
   system acts for);
3. `fhirclient` reads `Patient/{nhs}/$everything` with the token.

Arguments: a JSON object on stdin with fhir_base, client_id, key (PEM path), kid, alg, scope,
nhs and requesting_user. Prints a JSON summary; exits non-zero on any failure. The gateway's
CA certificate comes through REQUESTS_CA_BUNDLE.
"""

import json
import sys
import time
import uuid

try:
    import jwt
    import requests
    from fhirclient import client
except ImportError as e:
    sys.exit(f"missing a PyPI package ({e}): python3 -m pip install -r tests/smart-client/requirements.txt")

args = json.load(sys.stdin)
base = args["fhir_base"].rstrip("/")

# Discovery, the SMART way.
config = requests.get(f"{base}/.well-known/smart-configuration", timeout=30)
config.raise_for_status()
config = config.json()
assert "client_credentials" in config["grant_types_supported"], config
assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"], config
assert args["alg"] in config["token_endpoint_auth_signing_alg_values_supported"], config

# The library's own discovery (CapabilityStatement) finds the token endpoint; the assertion
# must be addressed to it, so the library is asked first with a placeholder and told again.
probe = client.FHIRClient(settings={"app_id": args["client_id"], "api_base": base + "/", "jwt_token": "placeholder", "scope": args["scope"]})
probe.wants_patient = False
probe.prepare()
token_uri = probe.server.auth.state["token_uri"]
assert token_uri == config["token_endpoint"], (token_uri, config["token_endpoint"])

with open(args["key"], "rb") as f:
    key = f.read()
now = int(time.time())
assertion = jwt.encode(
    {
        "iss": args["client_id"],
        "sub": args["client_id"],
        "aud": token_uri,
        "exp": now + 240,
        "jti": str(uuid.uuid4()),
        "requesting_user": args["requesting_user"],
    },
    key,
    algorithm=args["alg"],
    headers={"kid": args["kid"]},
)

smart = client.FHIRClient(settings={"app_id": args["client_id"], "api_base": base + "/", "jwt_token": assertion, "scope": args["scope"]})
smart.wants_patient = False
smart.prepare()
smart.authorize()
assert smart.ready, "no access token"
bundle = smart.server.request_json(f"Patient/{args['nhs']}/$everything")
types = sorted({e["resource"]["resourceType"] for e in bundle.get("entry", [])})
json.dump(
    {
        "token_endpoint": token_uri,
        "resourceType": bundle["resourceType"],
        "types": types,
        "entries": len(bundle.get("entry", [])),
    },
    sys.stdout,
)
