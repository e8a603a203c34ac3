/**
 * The agent's `sds { … }` settings (SPIRE's names and defaults), read by config.ts and acted
 * on by the Secret Discovery Service.
 */

/** How the SDS server names its resources and validates peers. */
export interface SdsConfig {
  /** `default_svid_name`: the resource name of the caller's first X509-SVID (by entry ID). */
  readonly defaultSvidName: string;
  /** `default_bundle_name`: the resource name of the agent's own trust domain bundle. */
  readonly defaultBundleName: string;
  /** `default_all_bundles_name`: the resource name of a SPIFFE validator over every bundle. */
  readonly defaultAllBundlesName: string;
  /**
   * `disable_spiffe_cert_validation`: serve validation contexts as plain `trusted_ca` roots
   * instead of the SPIFFE certificate validator (a client may override it through its node
   * metadata key of the same name).
   */
  readonly disableSpiffeCertValidation: boolean;
}

/** SPIRE's defaults. */
export const DEFAULT_SDS_CONFIG: SdsConfig = Object.freeze({
  defaultSvidName: 'default',
  defaultBundleName: 'ROOTCA',
  defaultAllBundlesName: 'ALL',
  disableSpiffeCertValidation: false,
});
