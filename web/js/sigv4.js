// AWS Signature Version 4 for the console's requests to an API deployed with IAM auth (API Gateway,
// service execute-api), with the browser's WebCrypto. It signs what `ota` signs through botocore:
// host, x-amz-date, x-amz-security-token (temporary credentials) and content-type, over the method,
// path, query and body; tests/e2e/test_console.py checks it against botocore byte for byte.
// Does not: obtain credentials (the sign-in page takes temporary ones) or send anything.

const encoder = new TextEncoder();

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
const bytesOf = (data) => (typeof data === "string" ? encoder.encode(data) : data);

async function sha256Hex(data) {
  return hex(await crypto.subtle.digest("SHA-256", bytesOf(data)));
}

async function hmac(key, data) {
  const imported = await crypto.subtle.importKey("raw", bytesOf(key), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return crypto.subtle.sign("HMAC", imported, encoder.encode(data));
}

// botocore's quote(path, safe='/~') over the already-encoded path: a '%' is encoded again, as AWS wants
// for every service but S3
function canonicalPath(pathname) {
  return (pathname || "/").replace(/[^A-Za-z0-9\-_.~/]/g,
    (c) => [...encoder.encode(c)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join(""));
}

function canonicalQuery(search) {
  const raw = search.replace(/^\?/, "");
  if (!raw) return "";
  const pairs = raw.split("&").map((pair) => {
    const at = pair.indexOf("=");
    return at < 0 ? [pair, ""] : [pair.slice(0, at), pair.slice(at + 1)];
  });
  pairs.sort(([ka, va], [kb, vb]) => (ka < kb ? -1 : ka > kb ? 1 : va < vb ? -1 : va > vb ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join("&");
}

export function amzDate(date) {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

// -> the headers to add: Authorization, X-Amz-Date and, with a session token, X-Amz-Security-Token
export async function sign({ method, url, body = "", contentType = null, credentials, region,
                             service = "execute-api", now = new Date() }) {
  const target = new URL(url);
  const stamp = amzDate(now);
  const day = stamp.slice(0, 8);
  const headers = { host: target.host, "x-amz-date": stamp };
  if (contentType) headers["content-type"] = contentType;
  if (credentials.sessionToken) headers["x-amz-security-token"] = credentials.sessionToken;
  const names = Object.keys(headers).sort();
  const canonical = [
    method.toUpperCase(), canonicalPath(target.pathname), canonicalQuery(target.search),
    names.map((n) => `${n}:${String(headers[n]).trim().replace(/\s+/g, " ")}`).join("\n") + "\n",
    names.join(";"), await sha256Hex(body || ""),
  ].join("\n");
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", stamp, scope, await sha256Hex(canonical)].join("\n");
  let key = await hmac(`AWS4${credentials.secretAccessKey}`, day);
  for (const part of [region, service, "aws4_request"]) key = await hmac(key, part);
  const signature = hex(await hmac(key, toSign));
  const signed = {
    Authorization: `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, ` +
      `SignedHeaders=${names.join(";")}, Signature=${signature}`,
    "X-Amz-Date": stamp,
  };
  if (credentials.sessionToken) signed["X-Amz-Security-Token"] = credentials.sessionToken;
  return signed;
}

// the region in an API Gateway URL (https://<id>.execute-api.<region>.amazonaws.com/...), or ""
export function regionOf(url) {
  const match = /^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/.exec(new URL(url).hostname);
  return match ? match[1] : "";
}
