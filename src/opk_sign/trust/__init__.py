"""Trust that lasts: TUF-distributed policy and JWKS archive, RFC 3161 timestamps."""
