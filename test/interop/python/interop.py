"""Checks the agent's Workload API with py-spiffe's public API (PyPI `spiffe`).

Each subcommand prints one "CHECK <name>: <fact>" line per fact it verified and exits 0, or
prints "FAIL: <reason>" on stderr and exits 1 at the first mismatch. The Workload API address
comes from SPIFFE_ENDPOINT_SOCKET.

    interop.py x509        --id ID
    interop.py jwt         --id ID --aud A --aud B
    interop.py watch       --id ID [--timeout 45]
    interop.py watch-end   --want CODE [--timeout 60]
    interop.py federation  --id ID --td TD [--x509-only-td TD]
    interop.py noidentity  [--wait 3]
    interop.py nosocket
"""

import argparse
import os
import sys
import threading
import time
from datetime import datetime, timezone

from cryptography.hazmat.primitives import serialization

from spiffe import JwtSource, JwtSvid, SpiffeId, TrustDomain, WorkloadApiClient, X509Source
from spiffe.errors import ArgumentError
from spiffe.workloadapi.errors import (
    FetchJwtSvidError,
    FetchX509SvidError,
    ValidateJwtSvidError,
    X509SourceError,
)


def check(name, fact):
    print(f"CHECK {name}: {fact}", flush=True)


def fail(reason):
    print(f"FAIL: {reason}", file=sys.stderr, flush=True)
    sys.exit(1)


def spki(key):
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def not_after(cert):
    return cert.not_valid_after_utc


def verify_chain(svid, bundle):
    """The leaf chains through the SVID's intermediates to one of the bundle's roots."""
    chain = svid.cert_chain
    for child, parent in zip(chain, chain[1:]):
        child.verify_directly_issued_by(parent)
    last = chain[-1]
    for root in bundle.x509_authorities:
        try:
            last.verify_directly_issued_by(root)
            return root
        except Exception:  # noqa: BLE001 - try the next root
            continue
    fail(f"{svid.spiffe_id}: the chain does not verify against any of the {len(bundle.x509_authorities)} root(s) of {bundle.trust_domain}")


def cmd_x509(args):
    want = SpiffeId(args.id)
    source = X509Source(timeout_in_seconds=20)
    try:
        svid = source.get_x509_context().default_svid
        if svid.spiffe_id != want:
            fail(f"X509Source default SVID is {svid.spiffe_id}, want {want}")
        leaf = svid.leaf
        check("x509-source", f"X509Source ready: default SVID {svid.spiffe_id}, serial {leaf.serial_number:x}, expires {not_after(leaf).isoformat()}, chain length {len(svid.cert_chain)}")
        bundle = source.get_bundle_for_trust_domain(want.trust_domain)
        if bundle is None or not bundle.x509_authorities:
            fail(f"no X.509 bundle for {want.trust_domain}")
        root = verify_chain(svid, bundle)
        check("x509-verify", f"the leaf chains to root {root.subject.rfc4514_string()!r} of the {want.trust_domain} bundle ({len(bundle.x509_authorities)} root(s))")
        if spki(svid.private_key.public_key()) != spki(leaf.public_key()):
            fail("the SVID private key does not match the leaf public key")
        check("x509-key", f"private key ({type(svid.private_key).__name__}) matches the leaf public key")
    finally:
        source.close()

    client = WorkloadApiClient()
    try:
        svids = client.fetch_x509_svids(timeout=10)
        check("x509-fetch-svids", f"WorkloadApiClient.fetch_x509_svids: {[str(s.spiffe_id) for s in svids]}")
        bundles = client.fetch_x509_bundles(timeout=10)
        if bundles.get_bundle_for_trust_domain(want.trust_domain) is None:
            fail(f"fetch_x509_bundles lacks {want.trust_domain}")
        check("x509-fetch-bundles", f"WorkloadApiClient.fetch_x509_bundles: {sorted(str(b.trust_domain) for b in bundles.bundles)}")
        jwt_bundles = client.fetch_jwt_bundles(timeout=10)
        own = jwt_bundles.get_bundle_for_trust_domain(want.trust_domain)
        if own is None:
            fail(f"fetch_jwt_bundles lacks {want.trust_domain}")
        check("jwt-fetch-bundles", f"WorkloadApiClient.fetch_jwt_bundles: {want.trust_domain} has key IDs {sorted(own.jwt_authorities)}")
    finally:
        client.close()


def cmd_jwt(args):
    want = SpiffeId(args.id)
    auds = set(args.aud)
    source = JwtSource(timeout_in_seconds=20)
    client = WorkloadApiClient()
    try:
        svid = source.fetch_svid(audience=auds, subject=want, timeout=10)
        if svid.spiffe_id != want:
            fail(f"JWT-SVID subject {svid.spiffe_id}, want {want}")
        if not auds.issubset(set(svid.audience)):
            fail(f"JWT-SVID audience {svid.audience} lacks some of {sorted(auds)}")
        expiry = datetime.fromtimestamp(svid.expiry, timezone.utc)
        check("jwt-fetch", f"JwtSource.fetch_svid: {svid.spiffe_id}, aud {sorted(svid.audience)}, expires {expiry.isoformat()}")
        bundle = source.get_bundle_for_trust_domain(want.trust_domain)
        if bundle is None:
            fail(f"JwtSource has no bundle for {want.trust_domain}")
        check("jwt-bundle", f"JwtSource bundle for {want.trust_domain} has key IDs {sorted(bundle.jwt_authorities)}")
        for aud in sorted(auds):
            parsed = JwtSvid.parse_and_validate(svid.token, bundle, {aud})
            if parsed.spiffe_id != want:
                fail(f"parse_and_validate gave {parsed.spiffe_id}, want {want}")
            check("jwt-parse-validate", f"JwtSvid.parse_and_validate with the JwtSource bundle accepts audience {aud!r}")
        try:
            JwtSvid.parse_and_validate(svid.token, bundle, {"not-an-audience"})
            fail("parse_and_validate accepted a wrong audience")
        except SystemExit:
            raise
        except Exception as err:  # noqa: BLE001
            check("jwt-parse-validate-wrong-aud", f"a wrong audience is rejected locally: {err}")
        validated = client.validate_jwt_svid(svid.token, sorted(auds)[0], timeout=10)
        if validated.spiffe_id != want:
            fail(f"validate_jwt_svid gave {validated.spiffe_id}, want {want}")
        check("jwt-validate-agent", f"agent ValidateJWTSVID accepts the token: {validated.spiffe_id}")
        try:
            client.validate_jwt_svid(svid.token, "not-an-audience", timeout=10)
            fail("the agent's ValidateJWTSVID accepted a wrong audience")
        except ValidateJwtSvidError as err:
            if "INVALID_ARGUMENT" not in str(err):
                fail(f"ValidateJWTSVID with a wrong audience: {err}, want INVALID_ARGUMENT")
            check("jwt-validate-agent-wrong-aud", f"agent ValidateJWTSVID rejects a wrong audience: {err}")
    finally:
        client.close()
        source.close()


def cmd_watch(args):
    want = SpiffeId(args.id)
    seen = []
    rotated_at = []
    changed = threading.Event()
    errors = []

    def pick(svids):
        for s in svids:
            if s.spiffe_id == want:
                return s
        raise ValueError(f"{want} not among {[str(s.spiffe_id) for s in svids]}")

    source = X509Source(timeout_in_seconds=20, svid_picker=pick)
    started = time.time()

    def on_update():
        try:
            leaf = source.get_x509_context().default_svid.leaf
        except Exception as err:  # noqa: BLE001
            errors.append(str(err))
            changed.set()
            return
        if not seen or seen[-1].serial_number != leaf.serial_number:
            seen.append(leaf)
            if len(seen) == 2:
                rotated_at.append(datetime.now(timezone.utc))
                changed.set()

    source.subscribe_for_updates(on_update)
    on_update()  # the state the source was created with
    try:
        if not changed.wait(args.timeout):
            fail(f"no rotation of {want} within {args.timeout}s ({len(seen)} distinct certificate(s))")
        if errors:
            fail(f"X509Source failed while watching: {errors}")
        old, new = seen[0], seen[1]
        now = rotated_at[0]
        ttl = not_after(old) - old.not_valid_before_utc
        check("watch-first", f"{want} serial {old.serial_number:x}, lifetime {ttl.total_seconds():.0f}s, notAfter {not_after(old).time()}")
        if now >= not_after(old):
            fail(f"the rotated SVID arrived at {now.time()}, after the old one expired at {not_after(old).time()}")
        if not_after(new) <= not_after(old):
            fail("the rotated SVID does not outlive the old one")
        check("watch-rotation", f"rotation observed {now.timestamp() - started:.1f}s after the watch started: serial {old.serial_number:x} -> {new.serial_number:x}, {(not_after(old) - now).total_seconds():.1f}s before the old SVID expired")
        if source.is_closed():
            fail("the X509Source closed itself")
    finally:
        source.close()


def cmd_watch_end(args):
    client = WorkloadApiClient()
    ready = threading.Event()
    ended = threading.Event()
    outcome = []

    def on_success(ctx):
        if not ready.is_set():
            print(f"READY {[str(s.spiffe_id) for s in ctx.x509_svids]}", flush=True)
            ready.set()

    def on_error(err):
        outcome.append(str(err))
        ended.set()

    # retry_connect=False: report how the stream ended instead of reconnecting.
    handler = client.stream_x509_contexts(on_success, on_error, retry_connect=False)
    try:
        if not ended.wait(args.timeout):
            fail(f"the stream did not end within {args.timeout}s")
        if not ready.is_set():
            fail(f"the stream failed before its first update: {outcome}")
        text = outcome[0]
        if "ended unexpectedly" in text:
            fail(f"the FetchX509SVID stream ended with status OK ({text!r}); a stream must end with an error status such as {args.want}, never OK")
        if args.want and args.want not in text:
            fail(f"the FetchX509SVID stream ended with {text!r}, want {args.want}")
        check("stream-end", f"the FetchX509SVID stream ended with {text}")
    finally:
        handler.cancel()
        client.close()


def cmd_federation(args):
    want = SpiffeId(args.id)
    td = TrustDomain(args.td)
    source = X509Source(timeout_in_seconds=20)
    try:
        svid = source.get_x509_context().default_svid
        if svid.spiffe_id != want:
            fail(f"default SVID {svid.spiffe_id}, want {want}")
        fed = source.get_bundle_for_trust_domain(td)
        if fed is None or not fed.x509_authorities:
            fail(f"X509Source has no X.509 bundle for {td}")
        check("federated-x509-bundle", f"X509Source has the {td} bundle ({len(fed.x509_authorities)} root(s))")
    finally:
        source.close()
    jwt_source = JwtSource(timeout_in_seconds=20)
    try:
        jb = jwt_source.get_bundle_for_trust_domain(td)
        if jb is None or not jb.jwt_authorities:
            fail(f"JwtSource has no JWT keys for {td}")
        check("federated-jwt-bundle", f"JwtSource has the {td} JWT bundle with key IDs {sorted(jb.jwt_authorities)}")
        if args.x509_only_td:
            otd = TrustDomain(args.x509_only_td)
            ob = jwt_source.get_bundle_for_trust_domain(otd)
            if ob is None:
                fail(f"JwtSource has no JWT bundle for {otd}")
            if ob.jwt_authorities:
                fail(f"the JWT bundle for {otd} has keys {sorted(ob.jwt_authorities)}, want none")
            check("federated-x509-only", f"{otd} has no JWT keys and its JWKS parsed (empty bytes would fail: 'Bundle bytes cannot be empty')")
    finally:
        jwt_source.close()


def cmd_noidentity(args):
    client = WorkloadApiClient()
    try:
        try:
            svid = client.fetch_x509_svid(timeout=10)
            fail(f"fetch_x509_svid succeeded for a caller with no entry: {svid.spiffe_id}")
        except FetchX509SvidError as err:
            if "no identity issued" not in str(err) or "PERMISSION_DENIED" not in str(err):
                fail(f"fetch_x509_svid: {err}, want PERMISSION_DENIED 'no identity issued'")
            check("noidentity-x509", f"fetch_x509_svid: {err}")
        try:
            client.fetch_jwt_svid({"some-audience"}, timeout=10)
            fail("fetch_jwt_svid succeeded for a caller with no entry")
        except FetchJwtSvidError as err:
            if "PERMISSION_DENIED" not in str(err):
                fail(f"fetch_jwt_svid: {err}, want PERMISSION_DENIED")
            check("noidentity-jwt", f"fetch_jwt_svid: {err}")
    finally:
        client.close()
    started = time.time()
    try:
        source = X509Source(timeout_in_seconds=args.wait)
        source.close()
        fail("X509Source became ready for a caller with no entry")
    except X509SourceError as err:
        # PermissionDenied is retryable: the source must keep retrying until the timeout, not fail at once.
        if "Timeout" not in str(err):
            fail(f"X509Source stopped with {err}, want it to keep retrying until its timeout")
        check("noidentity-x509source", f"X509Source kept retrying for {time.time() - started:.1f}s: {err}")


def cmd_nosocket(_args):
    path = os.environ.get("SPIFFE_ENDPOINT_SOCKET", "")
    try:
        X509Source(socket_path=path, timeout_in_seconds=2)
        fail(f"X509Source on a missing socket {path} succeeded")
    except ArgumentError as err:
        if "does not exist" not in str(err):
            fail(f"X509Source on a missing socket: {err}")
        check("nosocket-missing", f"X509Source on {path}: {err}")
    del os.environ["SPIFFE_ENDPOINT_SOCKET"]
    try:
        WorkloadApiClient()
        fail("WorkloadApiClient without SPIFFE_ENDPOINT_SOCKET succeeded")
    except ArgumentError as err:
        check("nosocket-unset", f"without SPIFFE_ENDPOINT_SOCKET: {err}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("x509")
    p.add_argument("--id", required=True)
    p = sub.add_parser("jwt")
    p.add_argument("--id", required=True)
    p.add_argument("--aud", action="append", required=True)
    p = sub.add_parser("watch")
    p.add_argument("--id", required=True)
    p.add_argument("--timeout", type=float, default=45)
    p = sub.add_parser("watch-end")
    p.add_argument("--want", default="")
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("federation")
    p.add_argument("--id", required=True)
    p.add_argument("--td", required=True)
    p.add_argument("--x509-only-td", default="")
    p = sub.add_parser("noidentity")
    p.add_argument("--wait", type=float, default=3)
    sub.add_parser("nosocket")
    args = parser.parse_args()
    import spiffe  # noqa: F401 - version banner only
    from importlib.metadata import version

    print(f"py-spiffe {version('spiffe')} interop {args.cmd} as uid {os.getuid()}, SPIFFE_ENDPOINT_SOCKET={os.environ.get('SPIFFE_ENDPOINT_SOCKET', '')}", flush=True)
    {
        "x509": cmd_x509,
        "jwt": cmd_jwt,
        "watch": cmd_watch,
        "watch-end": cmd_watch_end,
        "federation": cmd_federation,
        "noidentity": cmd_noidentity,
        "nosocket": cmd_nosocket,
    }[args.cmd](args)
    print("OK", flush=True)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001 - any library error is a failed check
        fail(f"{type(err).__name__}: {err}")
