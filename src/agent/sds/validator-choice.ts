/**
 * Which kind of validation context a client gets, decided from its Envoy node (SPIRE's SDS
 * handler): the SPIFFE certificate validator, unless it is disabled (by the agent's
 * `disable_spiffe_cert_validation`, overridden by the node metadata key of the same name) or
 * the client is an Envoy too old for it (a build version below 1.18). Pure.
 */
import type { Node__Output } from '../../gen/envoy/config/core/v3/Node.ts';
import type { Value__Output } from '../../gen/google/protobuf/Value.ts';

/** The node metadata key that overrides `disable_spiffe_cert_validation` for one client. */
export const DISABLE_SPIFFE_CERT_VALIDATION_KEY = 'disable_spiffe_cert_validation';

/** Go's strconv.ParseBool: the spellings it accepts, anything else is no value. */
const GO_BOOLS: ReadonlyMap<string, boolean> = new Map([
  ...['1', 't', 'T', 'TRUE', 'true', 'True'].map((s): [string, boolean] => [s, true]),
  ...['0', 'f', 'F', 'FALSE', 'false', 'False'].map((s): [string, boolean] => [s, false]),
]);

/** A metadata value read as a boolean (a bool, or a string Go's ParseBool accepts); undefined otherwise. */
export function metadataBool(value: Value__Output | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  if (value.kind === 'boolValue') return value.boolValue;
  if (value.kind === 'stringValue') return GO_BOOLS.get(value.stringValue ?? '');
  return undefined;
}

/** Whether SPIFFE certificate validation is disabled for this client. */
export function spiffeValidationDisabled(node: Node__Output | null | undefined, configured: boolean): boolean {
  const override = metadataBool(node?.metadata?.fields[DISABLE_SPIFFE_CERT_VALIDATION_KEY]);
  return override ?? configured;
}

/**
 * Whether the client can use the SPIFFE validator: an Envoy that states a build version must
 * be 1.18 or newer; a client that states none is assumed able to.
 */
export function supportsSpiffeValidator(node: Node__Output | null | undefined): boolean {
  if (node?.user_agent_version_type !== 'user_agent_build_version') return true;
  const version = node.user_agent_build_version?.version;
  const major = version?.major_number ?? 0;
  const minor = version?.minor_number ?? 0;
  return (major === 1 && minor > 17) || major > 1;
}

/** Whether validation contexts for this client use the SPIFFE validator (else plain trusted CAs). */
export function useSpiffeValidator(node: Node__Output | null | undefined, disabledByConfig: boolean): boolean {
  return !spiffeValidationDisabled(node, disabledByConfig) && supportsSpiffeValidator(node);
}
