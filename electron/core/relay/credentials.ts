/**
 * A relay's identity: a private key, a self-signed certificate and the shared secret, created on
 * first start under the relay's config directory and reused afterwards. Clients trust the
 * certificate by its pin (carried in the share link), so no CA is involved.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { BraidError, errorMessage } from '../errors';
import { certificatePin } from './share-link';

export interface RelayCredentials {
  key: string;      // PEM
  cert: string;     // PEM
  secret: string;
  pin: string;
  created: boolean; // made during this call
}

export interface CredentialFiles {
  dir: string;
  keyFile?: string;   // given key/cert are used as they are
  certFile?: string;
  secret?: string;
}

export function newSecret(): string {
  return crypto.randomBytes(24).toString('base64url');
}

export function pemToDer(pem: string): Buffer {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new BraidError('EBADCERT', 'no PEM certificate found');
  return Buffer.from(m[1].replace(/\s+/g, ''), 'base64');
}

function selfSign(keyFile: string, certFile: string, commonName: string): void {
  // Node can make keys but not X.509 certificates; openssl is on every server that runs a relay.
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-days', '3650', '-subj', `/CN=${commonName}`, '-keyout', keyFile, '-out', certFile,
    ], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
  } catch (err) {
    throw new BraidError('ECERTGEN', `could not create the relay certificate with openssl (${errorMessage(err)}); install openssl or pass --cert and --key`);
  }
  fs.chmodSync(keyFile, 0o600);
}

export function loadOrCreateCredentials(files: CredentialFiles): RelayCredentials {
  fs.mkdirSync(files.dir, { recursive: true, mode: 0o700 });
  let created = false;
  const keyFile = files.keyFile ?? path.join(files.dir, 'relay-key.pem');
  const certFile = files.certFile ?? path.join(files.dir, 'relay-cert.pem');
  if (!files.keyFile && !files.certFile && !(fs.existsSync(keyFile) && fs.existsSync(certFile))) {
    selfSign(keyFile, certFile, 'braid-relay');
    created = true;
  }
  let secret = files.secret;
  const secretFile = path.join(files.dir, 'relay-secret');
  if (!secret) {
    if (fs.existsSync(secretFile)) {
      secret = fs.readFileSync(secretFile, 'utf8').trim();
    } else {
      secret = newSecret();
      fs.writeFileSync(secretFile, secret + '\n', { mode: 0o600 });
      created = true;
    }
  }
  const key = fs.readFileSync(keyFile, 'utf8');
  const cert = fs.readFileSync(certFile, 'utf8');
  return { key, cert, secret, pin: certificatePin(pemToDer(cert)), created };
}
