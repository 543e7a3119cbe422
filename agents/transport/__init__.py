"""The agent's only gRPC-speaking layer: the SiteService.Connect stream and the EnrollmentService calls.

`connection` dials out with mTLS and reconnects with backoff, `session` runs one stream, `convert` maps
protobuf to the agent's dataclasses and back, `renewal` renews the site certificate over the connection,
`enrollment` makes the Enroll and RenewCertificate calls, and `tls_probe` reads the chain a server presents
before it is trusted. Nothing else in `agents` imports grpc or fedgate.v1.
"""
