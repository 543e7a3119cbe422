"""The only part of the gateway that speaks gRPC and protobuf: servicers, the server, the client library."""
