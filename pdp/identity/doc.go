// Package identity turns evidence about a caller into facts a decision may
// rely on: it verifies bearer tokens (JWTs from configured issuers, SPIFFE
// JWT-SVIDs), binds kernel-attested callers to the principals they may act
// as, and notices principals shared between executables.
//
// Nothing here trusts the request. A [Verifier] checks a token's signature
// against keys it fetched itself (a JWKS file or URL, OIDC discovery, or a
// SPIFFE trust bundle from the Workload API or a file), pins the issuer,
// requires the audience and bounds the clock skew, then maps the token to a
// principal. [Callers] match the caller the kernel reported (SO_PEERCRED,
// /proc) to principals. The engine records which facts came from where:
// [SourceVerified], [SourceAttested], [SourceTrusted], [SourceClaimed].
//
// The package has no cgo, so clients and proxies may import it.
package identity
