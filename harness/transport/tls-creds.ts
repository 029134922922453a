// TLS credentials for migration, made fresh per run: a PSK keys file for tls-creds-psk, and an
// x509 set for tls-creds-x509 (a CA, a server and a client certificate signed by it, and a rogue
// CA's client for the hostile case), with openssl: Debian installs it everywhere (priority
// important) and one `req`/`x509` pair per certificate needs no template file, where gnutls'
// certtool (gnutls-bin) needs a template per certificate. Each directory holds the file names
// QEMU's crypto/tlscredsx509.c loads (ca-cert.pem, server-cert.pem, server-key.pem,
// client-cert.pem, client-key.pem) or crypto/tlscredspsk.c's keys.psk.

import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";

export class TlsCredsError extends Error {
  override name = "TlsCredsError";
}

/** The QEMU object id each kind of credential gets on both sides. */
export const TLS_IDS = { psk: "tlscredspsk0", x509: "tlscredsx5090", authz: "tlsauthz0" } as const;

/** `dir/keys.psk` with one `username:hexkey` line (a fresh 32-byte key unless given). */
export function makePskDir(dir: string, options: { username?: string; key?: string } = {}): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const key = options.key ?? randomBytes(32).toString("hex");
  writeFileSync(join(dir, "keys.psk"), `${options.username ?? "qemu"}:${key}\n`, { mode: 0o600 });
  return dir;
}

export interface X509Set {
  /** ca-cert.pem, server-cert.pem, server-key.pem: the destination's dir. */
  server: string;
  /** ca-cert.pem, client-cert.pem, client-key.pem: a trusted client. */
  client: string;
  /** ca-cert.pem only: an anonymous client (no certificate of its own). */
  anonymousClient: string;
  /** ca-cert.pem (trusting the real server) with a client certificate of a rogue CA. */
  untrustedClient: string;
  /** The trusted client's subject, as QEMU gives it to tls-authz (gnutls' DN text). */
  clientDn: string;
  /** Names the server certificate is valid for. */
  serverNames: string[];
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  const r = await execa("openssl", args, { cwd, reject: false, stdin: "ignore" });
  if (r.exitCode !== 0) {
    throw new TlsCredsError(
      r.failed && r.exitCode === undefined
        ? `openssl could not run (${r.shortMessage}); install Debian's openssl (scripts/setup)`
        : `openssl ${args.join(" ")} failed (exit ${r.exitCode}): ${r.stderr.trim()}`,
    );
  }
}

/** A self-signed CA in `dir` (ca-cert.pem, ca-key.pem). */
async function makeCa(dir: string, name: string): Promise<void> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  await openssl(dir, [
    "req",
    "-x509",
    "-new",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-keyout",
    "ca-key.pem",
    "-out",
    "ca-cert.pem",
    "-subj",
    `/O=qemu-migtest/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

/** A leaf certificate `name`-cert.pem/-key.pem in `outDir`, signed by the CA in `caDir`. */
async function makeLeaf(
  caDir: string,
  outDir: string,
  name: "server" | "client",
  subject: string,
  extensions: string[],
  serial: number,
): Promise<void> {
  mkdirSync(outDir, { recursive: true, mode: 0o700 });
  const ext = join(outDir, `${name}.ext`);
  // QEMU's sanity check wants these on a leaf (crypto/tlscredsx509.c).
  writeFileSync(
    ext,
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      ...extensions,
    ].join("\n"),
  );
  await openssl(outDir, [
    "req",
    "-new",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    `${name}-key.pem`,
    "-out",
    `${name}.csr`,
    "-subj",
    subject,
  ]);
  await openssl(outDir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-days",
    "2",
    "-set_serial",
    String(serial),
    "-CA",
    join(caDir, "ca-cert.pem"),
    "-CAkey",
    join(caDir, "ca-key.pem"),
    "-out",
    `${name}-cert.pem`,
    "-extfile",
    ext,
  ]);
}

/** The whole x509 set under `root` (made once per run: RSA keys take a moment each). */
export async function makeX509Set(root: string): Promise<X509Set> {
  const ca = join(root, "ca");
  const rogue = join(root, "rogue-ca");
  // The rogue CA has the real one's name and another key: a client only offers a certificate
  // whose issuer the server asks for by name, so only this way does the server see (and must
  // refuse) the rogue client's certificate rather than none at all.
  await Promise.all([makeCa(ca, "qemu-migtest CA"), makeCa(rogue, "qemu-migtest CA")]);
  const set: X509Set = {
    server: join(root, "server"),
    client: join(root, "client"),
    anonymousClient: join(root, "anonymous-client"),
    untrustedClient: join(root, "untrusted-client"),
    clientDn: "O=qemu-migtest,CN=qemu-migtest client",
    serverNames: ["127.0.0.1", "localhost"],
  };
  await Promise.all([
    makeLeaf(
      ca,
      set.server,
      "server",
      "/O=qemu-migtest/CN=localhost",
      ["extendedKeyUsage=serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
      2,
    ),
    makeLeaf(
      ca,
      set.client,
      "client",
      "/O=qemu-migtest/CN=qemu-migtest client",
      ["extendedKeyUsage=clientAuth"],
      3,
    ),
    makeLeaf(
      rogue,
      set.untrustedClient,
      "client",
      "/O=qemu-migtest/CN=rogue client",
      ["extendedKeyUsage=clientAuth"],
      4,
    ),
  ]);
  mkdirSync(set.anonymousClient, { recursive: true, mode: 0o700 });
  for (const dir of [set.server, set.client, set.anonymousClient, set.untrustedClient]) {
    copyFileSync(join(ca, "ca-cert.pem"), join(dir, "ca-cert.pem"));
  }
  return set;
}

/** `-object` arguments for a credential object of QEMU's (values must hold no comma). */
export function objectArgs(type: string, props: Record<string, string>): string[] {
  for (const [k, v] of Object.entries(props)) {
    if (v.includes(",")) throw new TlsCredsError(`-object ${type}: ${k}=${v} holds a comma`);
  }
  const id = props.id;
  const rest = Object.entries(props).filter(([k]) => k !== "id");
  return ["-object", [type, `id=${id}`, ...rest.map(([k, v]) => `${k}=${v}`)].join(",")];
}
