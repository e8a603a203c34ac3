/**
 * A grpc-js certificate provider fed by the process itself (not by files), so a server
 * can rotate its TLS identity and trusted roots without restarting its listeners.
 *
 * One object serves both the CA and the identity role, so it works whichever way
 * grpc-js orders the two provider arguments.
 */
import { experimental } from '@grpc/grpc-js';

type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/** Holds the latest roots and identity and notifies grpc-js of every change. */
export class MemoryCertificateProvider implements experimental.CertificateProvider {
  #ca: experimental.CaCertificateUpdate | null = null;
  #identity: experimental.IdentityCertificateUpdate | null = null;
  readonly #caListeners = new Set<CaListener>();
  readonly #identityListeners = new Set<IdentityListener>();

  /** Replaces the trusted roots (PEM, concatenated). */
  setRoots(pem: string): void {
    this.#ca = { caCertificate: Buffer.from(pem) };
    for (const listener of this.#caListeners) listener(this.#ca);
  }

  /** Replaces the served identity (PEM chain, leaf first, and its PKCS#8 PEM key). */
  setIdentity(certChainPem: string, privateKeyPem: string): void {
    this.#identity = { certificate: Buffer.from(certChainPem), privateKey: Buffer.from(privateKeyPem) };
    for (const listener of this.#identityListeners) listener(this.#identity);
  }

  addCaCertificateListener(listener: CaListener): void {
    this.#caListeners.add(listener);
    // Deliver the current value after grpc-js has finished registering its own watcher:
    // it subscribes to providers before it subscribes the server, so a synchronous call
    // here would be lost and the listener would drop every connection.
    queueMicrotask(() => {
      if (this.#ca !== null && this.#caListeners.has(listener)) listener(this.#ca);
    });
  }
  removeCaCertificateListener(listener: CaListener): void {
    this.#caListeners.delete(listener);
  }
  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.#identity !== null && this.#identityListeners.has(listener)) listener(this.#identity);
    });
  }
  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.delete(listener);
  }
}
