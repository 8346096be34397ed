// node-oidc-provider issuing client-credentials tokens as signed JWTs (RS256), the same kind of
// token Portvakt's issuer signs, on 127.0.0.1:9200.
import { generateKeyPairSync } from "node:crypto";
import Provider from "oidc-provider";

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: "jwk" }), kid: "bench-rs256", use: "sig", alg: "RS256" };

const provider = new Provider("http://127.0.0.1:9200", {
  clients: [{
    client_id: "bench-client",
    client_secret: "bench-secret",
    grant_types: ["client_credentials"],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: "client_secret_basic",
  }],
  jwks: { keys: [jwk] },
  scopes: ["bench:read"],
  ttl: { ClientCredentials: 120 },
  features: {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => "https://bench.api/",
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({ scope: "bench:read", accessTokenFormat: "jwt", accessTokenTTL: 120, jwt: { sign: { alg: "RS256" } } }),
    },
  },
});
provider.listen(9200, "127.0.0.1", () => console.log("node-oidc-provider on http://127.0.0.1:9200"));
