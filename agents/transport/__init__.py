"""The agent's only gRPC-speaking layer: the SiteService.Connect stream to the gateway.

`connection` dials out with mTLS and reconnects with backoff, `session` runs one stream, `convert` maps
protobuf to the agent's dataclasses and back. Nothing else in `agents` imports grpc or fedgate.v1.
"""
